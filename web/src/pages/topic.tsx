/** Topics: every topic with its subscriber and article counts, and a topic's latest articles. */
import { useEffect, useState } from "preact/hooks";
import { getTopic, getTopics, type FeedItem, type Topic, type TopicSummary } from "../api";
import { ArticleCard, ErrorBox, formatNumber, href } from "../ui";

function plural(n: number, word: string): string {
  return `${formatNumber(n)} ${word}${n === 1 ? "" : "s"}`;
}

export function TopicPage({ topic }: { topic?: string }) {
  const [topics, setTopics] = useState<TopicSummary[] | null>(null);
  const [items, setItems] = useState<FeedItem[] | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    let cancelled = false;
    setError(null);
    getTopics()
      .then((t) => !cancelled && setTopics(t.topics))
      .catch((err) => !cancelled && setError(err));
    setItems(null);
    if (topic) {
      // The hash is free text; the server validates it against the topic list (400 otherwise).
      getTopic(topic as Topic, 30)
        .then((t) => !cancelled && setItems(t.items))
        .catch((err) => !cancelled && setError(err));
    }
    return () => {
      cancelled = true;
    };
  }, [topic]);

  return (
    <>
      <section class="panel" aria-labelledby="topics-h">
        <h2 id="topics-h">Topics</h2>
        {topics === null && !error && <p class="meta">Loading…</p>}
        {topics?.length === 0 && <p class="empty">No topics yet.</p>}
        {topics && topics.length > 0 && (
          <ul class="chips" aria-label="Topics">
            {topics.map((t) => (
              <li>
                <a class="chip" href={href("topics", t.name)} aria-current={t.name === topic ? "page" : undefined}>
                  {t.name} <span class="count">{plural(t.articles, "article")} · {plural(t.subscribers, "subscriber")}</span>
                </a>
              </li>
            ))}
          </ul>
        )}
      </section>
      <ErrorBox error={error} />
      {topic && (
        <section class="panel" aria-labelledby="topic-h">
          <h2 id="topic-h">Latest in {topic}</h2>
          {items === null && !error && <p class="meta">Loading…</p>}
          {items?.length === 0 && <p class="empty">No articles in {topic} yet.</p>}
          <div class="cards">{items?.map((item) => <ArticleCard item={item} />)}</div>
        </section>
      )}
    </>
  );
}
