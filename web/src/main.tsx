/**
 * Web client entry: hash routing between the pages and the app shell.
 * Hash routes keep the server side trivial (one index.html, no rewrites).
 * GET /v1/pipeline decides the pages: runs and the pipeline dashboard for any
 * pipeline, the feed and topic pages only when the news app is mounted.
 */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { apiToken, getPipeline, setApiToken, type PipelineInfo } from "./api";
import { DashboardPage } from "./pages/dashboard";
import { FeedPage } from "./pages/feed";
import { RunPage } from "./pages/run";
import { TopicPage } from "./pages/topic";
import { ErrorBox } from "./ui";
import "./styles.css";

type Route =
  | { page: "home" }
  | { page: "feed"; uid?: string }
  | { page: "topics"; topic?: string }
  | { page: "runs"; runId?: string }
  | { page: "dashboard" };

/** Parses `#/page/arg` into a route (unknown hashes go home). */
export function parseHash(hash: string): Route {
  const [page = "", arg] = hash.replace(/^#\/?/, "").split("/").map((p) => decodeURIComponent(p));
  if (page === "feed") return { page, uid: arg || undefined };
  if (page === "topics") return { page, topic: arg || undefined };
  if (page === "runs") return { page, runId: arg || undefined };
  if (page === "dashboard") return { page };
  return { page: "home" };
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseHash(location.hash));
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

const NAV: Array<{ page: Route["page"]; href: string; label: string; news?: true }> = [
  { page: "feed", href: "#/feed", label: "Feed", news: true },
  { page: "topics", href: "#/topics", label: "Topics", news: true },
  { page: "runs", href: "#/runs", label: "Runs" },
  { page: "dashboard", href: "#/dashboard", label: "Pipeline" },
];

/** The pipeline description, fetched once (retried while the server is unreachable). */
function usePipelineInfo(): { info: PipelineInfo | null; error: unknown } {
  const [info, setInfo] = useState<PipelineInfo | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = () =>
      getPipeline()
        .then((p) => {
          setInfo(p);
          setError(null);
        })
        .catch((err) => {
          setError(err);
          timer = setTimeout(load, 3000);
        });
    void load();
    return () => clearTimeout(timer);
  }, []);
  return { info, error };
}

/** Shown for a feed/topic hash on a server without the news app. */
function NoNewsApp({ info }: { info: PipelineInfo }) {
  return (
    <section class="panel">
      <h2>No feed on this server</h2>
      <p>
        The feed and topic pages come with the news app. This server runs the <strong>{info.name}</strong> pipeline
        {info.apps.length ? ` with ${info.apps.join(", ")}` : " with no app mounted"}.
      </p>
      <p>
        See its <a href="#/runs">recent runs</a> or the <a href="#/dashboard">pipeline dashboard</a>.
      </p>
    </section>
  );
}

function TokenSettings() {
  const [token, setToken] = useState(apiToken());
  const [saved, setSaved] = useState(false);
  return (
    <details class="token">
      <summary>API token</summary>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          setApiToken(token.trim());
          setSaved(true);
        }}
      >
        <label for="api-token">Bearer token for write endpoints (only when the server sets API_TOKEN)</label>
        <div class="row">
          <input id="api-token" type="password" autocomplete="off" value={token} onInput={(e) => { setToken(e.currentTarget.value); setSaved(false); }} />
          <button type="submit">Save</button>
        </div>
        {saved && <p role="status">Saved in this browser.</p>}
      </form>
    </details>
  );
}

function Page({ route, info }: { route: Route; info: PipelineInfo }) {
  const news = info.apps.includes("news");
  switch (route.page) {
    case "home":
      return news ? <FeedPage /> : <RunPage info={info} />;
    case "feed":
      return news ? <FeedPage uid={route.uid} /> : <NoNewsApp info={info} />;
    case "topics":
      return news ? <TopicPage topic={route.topic} /> : <NoNewsApp info={info} />;
    case "runs":
      return <RunPage runId={route.runId} info={info} />;
    case "dashboard":
      return <DashboardPage info={info} />;
  }
}

function App() {
  const route = useRoute();
  const { info, error } = usePipelineInfo();
  const news = info?.apps.includes("news") ?? false;
  const nav = NAV.filter((n) => news || !n.news);
  // Home is the feed with the news app, the runs page without it.
  const current = route.page === "home" ? (news ? "feed" : "runs") : route.page;
  useEffect(() => {
    document.title = `${NAV.find((n) => n.page === current)?.label ?? "edgepipe"} · ${info?.name ?? "edgepipe"}`;
  }, [current, info?.name]);
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="#/">
          edgepipe
        </a>
        {info && <span class="pipeline-name" title="Pipeline served here">{info.name}</span>}
        <nav aria-label="Pages">
          {nav.map((n) => (
            <a href={n.href} aria-current={current === n.page ? "page" : undefined}>
              {n.label}
            </a>
          ))}
        </nav>
      </header>
      <main id="main" tabIndex={-1}>
        {info ? <Page route={route} info={info} /> : error ? <ErrorBox error={error} /> : <p class="meta">Loading…</p>}
      </main>
      <footer class="foot">
        <TokenSettings />
      </footer>
    </>
  );
}

render(<App />, document.getElementById("app")!);
