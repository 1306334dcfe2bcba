/**
 * Feed page: pick a user, edit interests (toggle chips), read the feed with
 * infinite scroll by cursor, filter by topic, and a live "Refresh (N)" button
 * fed by the SSE stream of new items.
 */
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, feedEventsUrl, getDemoUsers, getFeed, getTopics, getUser, putUser, type DemoUsers as DemoUserList, type FeedItem, type Topic, type TopicSummary } from "../api";
import { ArticleCard, ErrorBox, formatNumber, href } from "../ui";

const RECENT_KEY = "edgepipe.recentUsers";
const UID_PATTERN = "[A-Za-z0-9_\\-]{1,64}";
const PAGE_SIZE = 20;

function recentUsers(): string[] {
  try {
    const list = JSON.parse(localStorage.getItem(RECENT_KEY) ?? "[]");
    return Array.isArray(list) ? list.filter((u) => typeof u === "string").slice(0, 8) : [];
  } catch {
    return [];
  }
}

function rememberUser(uid: string): void {
  localStorage.setItem(RECENT_KEY, JSON.stringify([uid, ...recentUsers().filter((u) => u !== uid)].slice(0, 8)));
}

function UserPicker({ current }: { current?: string }) {
  const [value, setValue] = useState(current ?? "");
  const recent = recentUsers();
  return (
    <section class="panel" aria-labelledby="pick-user">
      <h2 id="pick-user">{current ? "Switch user" : "Pick a user"}</h2>
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          if (e.currentTarget.checkValidity()) location.hash = href("feed", value.trim());
        }}
      >
        <label for="uid-input" class="sr-only">
          User id
        </label>
        <input id="uid-input" name="uid" required pattern={UID_PATTERN} placeholder="user id, e.g. alice" value={value} onInput={(e) => setValue(e.currentTarget.value)} autocomplete="off" />
        <button type="submit">Open feed</button>
      </form>
      {recent.length > 0 && (
        <p class="meta">
          Recent:{" "}
          {recent.map((u) => (
            <a class="chip small" href={href("feed", u)} aria-current={u === current ? "page" : undefined}>
              {u}
            </a>
          ))}
        </p>
      )}
    </section>
  );
}

function Interests({ uid, interests, topics, onChange }: { uid: string; interests: Topic[]; topics: TopicSummary[]; onChange: (next: Topic[]) => Promise<void> }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  // The classifier's topics are a fixed list; GET /v1/topics names all of them.
  const names = useMemo(() => [...new Set<Topic>([...topics.map((t) => t.name as Topic), ...interests])].sort(), [topics, interests]);

  const save = async (next: Topic[]) => {
    setBusy(true);
    setError(null);
    try {
      await onChange(next);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const toggle = (name: Topic) => save(interests.includes(name) ? interests.filter((i) => i !== name) : [...interests, name]);

  return (
    <section class="panel" aria-labelledby="interests-h">
      <h2 id="interests-h">Interests of {uid}</h2>
      <div class="chips" role="group" aria-label="Interests (toggle)">
        {names.length === 0 && <p class="meta">Loading topics…</p>}
        {names.map((name) => (
          <button type="button" class="chip" aria-pressed={interests.includes(name)} disabled={busy} onClick={() => toggle(name)}>
            {interests.includes(name) ? "✓ " : "+ "}
            {name}
          </button>
        ))}
      </div>
      <ErrorBox error={error} />
    </section>
  );
}

/** The users `npm start` seeds (u0001..), one click from their feeds. */
function DemoUsers() {
  const [list, setList] = useState<DemoUserList | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    getDemoUsers(12).then(setList).catch(setError);
  }, []);
  return (
    <section class="panel" aria-labelledby="demo-h">
      <h2 id="demo-h">Demo users</h2>
      <ErrorBox error={error} />
      {list === null && !error && <p class="meta">Loading…</p>}
      {list && list.total === 0 && (
        <p class="empty">No demo users here: `npm start` seeds them (u0001, u0002, …) unless DEMO=off. Type any user id above and pick interests to make your own.</p>
      )}
      {list && list.total > 0 && (
        <>
          <p class="meta">
            {formatNumber(list.total)} demo users were seeded ({list.users[0]?.uid}–{list.lastUid}), each following 2–4 topics. Open one's feed:
          </p>
          <ul class="demo-users">
            {list.users.map((u) => (
              <li>
                <a class="chip" href={href("feed", u.uid)}>
                  <strong>{u.uid}</strong> <span class="count">{u.interests.join(", ")}</span>
                </a>
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}

export function FeedPage({ uid }: { uid?: string }) {
  if (!uid)
    return (
      <>
        <UserPicker />
        <DemoUsers />
      </>
    );
  // Keyed so switching users resets every piece of state.
  return <Feed key={uid} uid={uid} />;
}

function Feed({ uid }: { uid: string }) {
  const [interests, setInterests] = useState<Topic[] | null>(null);
  const [topics, setTopics] = useState<TopicSummary[]>([]);
  const [items, setItems] = useState<FeedItem[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(false);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [pending, setPending] = useState<FeedItem[]>([]);
  const [live, setLive] = useState<"connecting" | "live" | "reconnecting">("connecting");
  const [filter, setFilter] = useState("");
  const [freshIds, setFreshIds] = useState<Set<string>>(new Set());
  const sentinel = useRef<HTMLDivElement>(null);
  const listHeading = useRef<HTMLHeadingElement>(null);
  const shown = useRef(new Set<string>());

  const loadFirst = async () => {
    setLoading(true);
    setError(null);
    try {
      const page = await getFeed(uid, { limit: PAGE_SIZE });
      shown.current = new Set(page.items.map((i) => i.id));
      setItems(page.items);
      setCursor(page.nextCursor);
      setPending([]);
      setLoaded(true);
      return page;
    } catch (err) {
      // An unknown user has no feed yet: show the empty state, not an error.
      if (err instanceof ApiError && err.status === 404) {
        setItems([]);
        setCursor(null);
        setLoaded(true);
      } else setError(err);
      return null;
    } finally {
      setLoading(false);
    }
  };

  const loadMore = async () => {
    if (!cursor || loading) return;
    setLoading(true);
    try {
      const page = await getFeed(uid, { limit: PAGE_SIZE, cursor });
      const fresh = page.items.filter((i) => !shown.current.has(i.id));
      fresh.forEach((i) => shown.current.add(i.id));
      setItems((prev) => [...prev, ...fresh]);
      setCursor(page.nextCursor);
    } catch (err) {
      setError(err);
    } finally {
      setLoading(false);
    }
  };

  // Profile, topics, first page; then the live stream starting after the newest item shown.
  useEffect(() => {
    rememberUser(uid);
    let source: EventSource | undefined;
    let cancelled = false;
    getUser(uid)
      .then((u) => !cancelled && setInterests(u.interests))
      .catch((err) => !cancelled && (err instanceof ApiError && err.status === 404 ? setInterests([]) : setError(err)));
    getTopics()
      .then((t) => !cancelled && setTopics(t.topics))
      .catch(() => undefined);
    void loadFirst().then((page) => {
      if (cancelled) return;
      source = new EventSource(feedEventsUrl(uid, page?.items[0]?.id));
      source.onopen = () => setLive("live");
      source.onerror = () => setLive("reconnecting");
      source.addEventListener("item", (e) => {
        const item = JSON.parse((e as MessageEvent<string>).data) as FeedItem;
        if (shown.current.has(item.id)) return;
        shown.current.add(item.id);
        setPending((prev) => [item, ...prev]);
      });
    });
    return () => {
      cancelled = true;
      source?.close();
    };
  }, [uid]);

  // Infinite scroll: load the next page when the sentinel comes into view.
  useEffect(() => {
    const el = sentinel.current;
    if (!el || !cursor) return;
    const io = new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && void loadMore(), { rootMargin: "400px" });
    io.observe(el);
    return () => io.disconnect();
  }, [cursor, loading, items.length]);

  const refresh = () => {
    setFreshIds(new Set(pending.map((p) => p.id)));
    setItems((prev) => [...pending, ...prev]);
    setPending([]);
    listHeading.current?.focus();
  };

  const changeInterests = async (next: Topic[]) => {
    const saved = await putUser(uid, next);
    setInterests(saved.interests);
    if (filter && !(saved.interests as string[]).includes(filter)) setFilter("");
    await loadFirst();
  };

  const filterTopics = useMemo(() => [...new Set([...(interests ?? []), ...items.map((i) => i.topic)])].filter(Boolean).sort(), [interests, items]);
  const visible = filter ? items.filter((i) => i.topic === filter) : items;

  return (
    <>
      <UserPicker current={uid} />
      {interests !== null && <Interests uid={uid} interests={interests} topics={topics} onChange={changeInterests} />}
      <section class="panel" aria-labelledby="feed-h">
        <div class="feed-bar">
          <h2 id="feed-h" tabIndex={-1} ref={listHeading}>
            Feed
          </h2>
          <span class={`live ${live}`} role="status">
            {live === "live" ? "● live" : live === "connecting" ? "connecting…" : "reconnecting…"}
          </span>
          <label for="topic-filter">Topic</label>
          <select id="topic-filter" value={filter} onChange={(e) => setFilter(e.currentTarget.value)}>
            <option value="">All topics</option>
            {filterTopics.map((t) => (
              <option value={t}>{t}</option>
            ))}
          </select>
        </div>
        <div aria-live="polite">
          {pending.length > 0 && (
            <button type="button" class="refresh" onClick={refresh}>
              Refresh ({pending.length})
            </button>
          )}
        </div>
        <ErrorBox error={error} />
        {loaded && visible.length === 0 && !loading && (
          <p class="empty">{filter ? `No ${filter} articles loaded.` : interests?.length ? "Nothing in this feed yet: new articles in your topics appear here." : "Pick some interests to fill this feed."}</p>
        )}
        <div class="cards">
          {visible.map((item) => (
            <ArticleCard item={item} isNew={freshIds.has(item.id)} />
          ))}
        </div>
        <div ref={sentinel} class="sentinel">
          {cursor && (
            <button type="button" onClick={() => void loadMore()} disabled={loading}>
              {loading ? "Loading…" : "Load more"}
            </button>
          )}
          {loaded && !cursor && items.length > 0 && <p class="meta">End of feed.</p>}
        </div>
      </section>
    </>
  );
}
