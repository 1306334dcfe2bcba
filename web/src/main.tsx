/**
 * Web client entry: hash routing between the four pages and the app shell.
 * Hash routes keep the server side trivial (one index.html, no rewrites).
 */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { apiToken, setApiToken } from "./api";
import { DashboardPage } from "./pages/dashboard";
import { FeedPage } from "./pages/feed";
import { RunPage } from "./pages/run";
import { TopicPage } from "./pages/topic";
import "./styles.css";

type Route =
  | { page: "feed"; uid?: string }
  | { page: "topics"; topic?: string }
  | { page: "runs"; runId?: string }
  | { page: "dashboard" };

/** Parses `#/page/arg` into a route (unknown hashes go to the feed page). */
export function parseHash(hash: string): Route {
  const [page = "", arg] = hash.replace(/^#\/?/, "").split("/").map((p) => decodeURIComponent(p));
  if (page === "topics") return { page, topic: arg || undefined };
  if (page === "runs") return { page, runId: arg || undefined };
  if (page === "dashboard") return { page };
  return { page: "feed", uid: page === "feed" ? arg || undefined : undefined };
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

const NAV: Array<{ page: Route["page"]; href: string; label: string }> = [
  { page: "feed", href: "#/feed", label: "Feed" },
  { page: "topics", href: "#/topics", label: "Topics" },
  { page: "runs", href: "#/runs", label: "Runs" },
  { page: "dashboard", href: "#/dashboard", label: "Pipeline" },
];

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

function App() {
  const route = useRoute();
  useEffect(() => {
    document.title = `${NAV.find((n) => n.page === route.page)?.label ?? "edgepipe"} · edgepipe`;
  }, [route.page]);
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="#/feed">edgepipe</a>
        <nav aria-label="Pages">
          {NAV.map((n) => (
            <a href={n.href} aria-current={route.page === n.page ? "page" : undefined}>
              {n.label}
            </a>
          ))}
        </nav>
      </header>
      <main id="main" tabIndex={-1}>
        {route.page === "feed" && <FeedPage uid={route.uid} />}
        {route.page === "topics" && <TopicPage topic={route.topic} />}
        {route.page === "runs" && <RunPage runId={route.runId} />}
        {route.page === "dashboard" && <DashboardPage />}
      </main>
      <footer class="foot">
        <TokenSettings />
      </footer>
    </>
  );
}

render(<App />, document.getElementById("app")!);
