import { describe, expect, it } from "vitest";
import { canonicalUrl, contentHash, contentHashOfNormalized, normalizeText } from "../functions/news/normalize";
import { TOPICS, agLabelOf, classifyTopic, tokenize } from "../functions/news/classify";
import { LEXICON } from "../functions/news/lexicon";
import { extractKeywords, readingTimeMinutes, splitSentences, summarize } from "../functions/news/enrich";
import { articlesFromCsv, articlesFromJsonl, parseCsv } from "../functions/news/csv";
import { sha256HexSync } from "../functions/tools/sha256";

describe("normalizeText", () => {
  it("decodes the ampersand-less AG News references", () => {
    expect(normalizeText("#36;10 million")).toBe("$10 million");
    expect(normalizeText("competing for the  #36;10 million Ansari X Prize")).toBe(
      "competing for the $10 million Ansari X Prize",
    );
    expect(normalizeText("the world #39;s largest")).toBe("the world's largest");
    expect(normalizeText("Johnson  amp; Johnson")).toBe("Johnson & Johnson");
    expect(normalizeText("In  quot;helping themselves, quot; Ricky")).toBe('In "helping themselves," Ricky');
    expect(normalizeText("Don #146;t stop  #151; now")).toBe("Don\u2019t stop \u2014 now");
  });

  it("decodes named, decimal and hex entities", () => {
    expect(normalizeText("AT&amp;T &lt;3 &quot;x&quot; it&#39;s &#36;5 &#x24;6 caf&eacute;")).toBe(
      'AT&T <3 "x" it\'s $5 $6 caf\u00e9',
    );
  });

  it("strips tags, also when they arrive double-escaped", () => {
    expect(normalizeText("&lt;b&gt;Bold&lt;/b&gt; claim")).toBe("Bold claim");
    expect(normalizeText("&amp;lt;b&amp;gt;Bold&amp;lt;/b&amp;gt; claim")).toBe("Bold claim");
    expect(normalizeText("<p>One</p><p>Two</p>")).toBe("One Two");
    expect(
      normalizeText(
        'Staples Inc. &lt;A HREF=""http://www.investor.reuters.com/FullQuote.aspx?ticker=SPLS.O""&gt;SPLS.O&lt;/A&gt;, the top',
      ),
    ).toBe("Staples Inc. SPLS.O, the top");
    expect(normalizeText("Apple Computer Inc.&lt;AAPL.O&gt; on Tuesday")).toBe("Apple Computer Inc. on Tuesday");
    // A comparison is text, not a tag.
    expect(normalizeText("if a < b and c > d")).toBe("if a < b and c > d");
  });

  it("turns backslash line breaks into spaces and keeps escaped dollars", () => {
    expect(normalizeText("A second\\team of rocketeers")).toBe("A second team of rocketeers");
    expect(normalizeText("distribution.\\\\I think")).toBe("distribution. I think");
    expect(normalizeText("for \\$375 million")).toBe("for $375 million");
  });

  it("collapses whitespace and trims", () => {
    expect(normalizeText("  Unions at Turner   Newall \n\t say  ")).toBe("Unions at Turner Newall say");
    expect(normalizeText("")).toBe("");
  });

  it("is idempotent on clean text", () => {
    const once = normalizeText("Oracle &lt;b&gt;bids&lt;/b&gt;  #36;7.7 billion for PeopleSoft\\again");
    expect(normalizeText(once)).toBe(once);
  });
});

describe("canonicalUrl", () => {
  it("lowercases scheme and host, drops fragment, tracking params and trailing slash, sorts params", () => {
    expect(canonicalUrl("HTTPS://News.Example.COM/World/Story/?utm_source=x&b=2&fbclid=abc&a=1&ref=tw#top")).toBe(
      "https://news.example.com/World/Story?a=1&b=2",
    );
    expect(canonicalUrl("http://example.com/")).toBe("http://example.com");
    expect(canonicalUrl("http://example.com:80/a?gclid=1&UTM_MEDIUM=y")).toBe("http://example.com/a");
  });

  it("treats the same story linked two ways as one URL", () => {
    expect(canonicalUrl("https://example.com/a?y=2&x=1")).toBe(canonicalUrl("https://EXAMPLE.com/a/?x=1&y=2#c"));
  });

  it("is undefined for invalid or non-http URLs", () => {
    expect(canonicalUrl("not a url")).toBeUndefined();
    expect(canonicalUrl("")).toBeUndefined();
    expect(canonicalUrl("ftp://example.com/file")).toBeUndefined();
    expect(canonicalUrl("javascript:alert(1)")).toBeUndefined();
  });
});

describe("contentHash", () => {
  it("is a stable SHA-256 hex of the normalized, lowercased content", async () => {
    const hash = await contentHash("Hello", "World");
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    // printf 'hello\nworld' | sha256sum
    expect(hash).toBe("26c60a61d01db5836ca70fefd44a6a016620413c8ef5f259a6c5612d4f79d3b8");
  });

  it("ignores markup, entities, case and spacing but not content", async () => {
    const a = await contentHash("Oil  Prices Rise", "Crude at  #36;50 a barrel &lt;b&gt;today&lt;/b&gt;");
    const b = await contentHash("oil prices rise", "crude at $50 a barrel today");
    const c = await contentHash("oil prices fall", "crude at $50 a barrel today");
    expect(a).toBe(b);
    expect(a).not.toBe(c);
  });
});

describe("classifyTopic", () => {
  it("returns one of the fixed topics with a confidence in [0, 1]", () => {
    const cases: Array<[string, string, string]> = [
      ["Yankees beat Red Sox 5-3 in extra innings", "The pitcher threw a shutout and the bullpen held on.", "sports"],
      ["Insurgents attack troops in Baghdad", "Militants killed three soldiers in a car bomb attack, Iraqi officials said.", "world"],
      ["Oracle raises bid for PeopleSoft", "Shareholders weigh the $7.7 billion takeover offer.", "business"],
      ["Microsoft patches Windows flaw", "The software update fixes a security vulnerability that hackers used to spread a worm.", "technology"],
      ["NASA rover finds signs of water on Mars", "Scientists say the spacecraft's instruments detected minerals.", "science"],
      ["Kerry and Bush clash in presidential debate", "The Democratic senator attacked the Republican president's record.", "politics"],
      ["Dow falls as Fed raises interest rates", "Wall Street stocks slid and Treasury yields rose after Greenspan spoke.", "finance"],
    ];
    for (const [title, body, topic] of cases) {
      const prediction = classifyTopic(title, body);
      expect(prediction.topic, title).toBe(topic);
      expect(prediction.confidence).toBeGreaterThan(0);
      expect(prediction.confidence).toBeLessThanOrEqual(1);
      expect(TOPICS).toContain(prediction.topic);
    }
  });

  it("weighs title words more than body words", () => {
    const body = "Shares of the company rose on strong quarterly earnings and analysts raised forecasts.";
    expect(classifyTopic("Striker scores twice as United win the derby", body).topic).toBe("sports");
    expect(classifyTopic("Quarterly earnings beat forecasts", body).topic).toBe("business");
  });

  it("falls back to world with zero confidence when nothing matches", () => {
    expect(classifyTopic("", "")).toMatchObject({ topic: "world", confidence: 0 });
  });

  it("has a lexicon whose every term can match (tokenizes to itself, no duplicates per topic)", () => {
    const problems: string[] = [];
    for (const [topic, tiers] of Object.entries(LEXICON)) {
      expect(TOPICS).toContain(topic);
      const seen = new Set<string>();
      for (const list of Object.values(tiers)) {
        for (const term of list.split(/\s+/).filter(Boolean)) {
          const words = term.replace(/\*$/, "").split("_");
          if (tokenize(words.join(" ")).join(" ") !== words.join(" ")) problems.push(`${topic}: ${term} never matches`);
          if (seen.has(term)) problems.push(`${topic}: ${term} listed twice`);
          seen.add(term);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it("maps every topic to an AG News class", () => {
    expect(TOPICS.map(agLabelOf)).toEqual([1, 1, 3, 3, 4, 4, 4, 2, 1, 4, 1]);
  });
});

describe("summarize", () => {
  const body =
    "Apple Inc. said on Tuesday that Mr. Jobs met U.S. officials in Washington. " +
    "Shares rose 5 percent in early trading. The company also said revenue rose. Analysts were pleased with the revenue outlook.";

  it("splits sentences without breaking at abbreviations", () => {
    expect(splitSentences(body)).toEqual([
      "Apple Inc. said on Tuesday that Mr. Jobs met U.S. officials in Washington.",
      "Shares rose 5 percent in early trading.",
      "The company also said revenue rose.",
      "Analysts were pleased with the revenue outlook.",
    ]);
  });

  it("keeps at most two sentences in their original order", () => {
    const summary = summarize(body);
    const sentences = splitSentences(summary);
    expect(sentences.length).toBeLessThanOrEqual(2);
    expect(summary.startsWith("Apple Inc. said on Tuesday")).toBe(true);
    for (const s of sentences) expect(body).toContain(s);
    const positions = sentences.map((s) => body.indexOf(s));
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
  });

  it("never exceeds 280 characters and cuts a too-long lead at a word boundary", () => {
    const lead = `${"Regulators in Brussels reviewed the proposed merger ".repeat(8).trim()}.`;
    const summary = summarize(`${lead} Short second sentence.`);
    expect(lead.length).toBeGreaterThan(280);
    expect(summary.length).toBeLessThanOrEqual(280);
    expect(summary.endsWith("\u2026")).toBe(true);
    expect(lead.startsWith(summary.slice(0, -1))).toBe(true);
    expect(lead[summary.length - 1]).toBe(" ");
  });

  it("respects custom limits and drops a bare wire credit", () => {
    expect(summarize("AP - One thing happened. Another thing followed.", { maxSentences: 1 })).toBe("One thing happened.");
    expect(summarize("A sentence that is longer than twenty characters.", { maxChars: 20 }).length).toBeLessThanOrEqual(20);
    expect(summarize("")).toBe("");
  });
});

describe("extractKeywords", () => {
  it("returns lowercased, stopword-free keywords with multi-word names kept whole", () => {
    const keywords = extractKeywords(
      "Fears for T N pension after talks",
      "Unions representing workers at Turner   Newall say they are 'disappointed' after talks with stricken parent firm Federal Mogul.",
    );
    expect(keywords.length).toBeLessThanOrEqual(5);
    expect(keywords).toContain("federal mogul");
    expect(keywords).toContain("pension");
    expect(keywords[0]).toBe("talks"); // in the title and the body
    for (const k of keywords) {
      expect(k).toBe(k.toLowerCase());
      expect(["the", "for", "after", "they", "are", "with"]).not.toContain(k);
    }
  });

  it("boosts title words and respects max", () => {
    // "money" occurs three times in the body, but each title word counts three times on its own.
    const keywords = extractKeywords("Comet probe launched", "The probe will study a comet. The mission cost money and money and money.", 2);
    expect(keywords).toEqual(["comet", "probe"]); // equal scores keep first-seen order
    expect(extractKeywords("", "", 5)).toEqual([]);
  });
});

describe("readingTimeMinutes", () => {
  it("rounds up at the given words per minute, at least 1", () => {
    expect(readingTimeMinutes("")).toBe(1);
    expect(readingTimeMinutes("word ".repeat(200))).toBe(1);
    expect(readingTimeMinutes("word ".repeat(201))).toBe(2);
    expect(readingTimeMinutes("word ".repeat(300), 100)).toBe(3);
  });
});

describe("parseCsv", () => {
  it("handles quoted commas, doubled quotes, newlines inside quotes and CRLF", () => {
    const text = 'a,b,c\r\n3,"Staples Profit Up, to Enter China Market","He said ""hi""\nthen left"\r\n4,plain,x\n';
    expect(parseCsv(text)).toEqual([
      ["a", "b", "c"],
      ["3", "Staples Profit Up, to Enter China Market", 'He said "hi"\nthen left'],
      ["4", "plain", "x"],
    ]);
  });

  it("keeps empty fields and rejects an unterminated quote", () => {
    expect(parseCsv("a,,c\n,,")).toEqual([["a", "", "c"], ["", "", ""]]);
    expect(() => parseCsv('a,"open')).toThrow(/unterminated/);
  });
});

describe("articlesFromCsv", () => {
  it("reads AG News with a header", () => {
    const text = 'label,title,description\n3,"Profit Up, Shares Down",Body #36;5\n';
    expect(articlesFromCsv(text)).toEqual([{ title: "Profit Up, Shares Down", body: "Body #36;5", label: 3 }]);
  });

  it("reads AG News without a header", () => {
    const text = '2,Yankees win,"The Yankees won, again."\n1,Talks resume,Diplomats met.\n';
    expect(articlesFromCsv(text)).toEqual([
      { title: "Yankees win", body: "The Yankees won, again.", label: 2 },
      { title: "Talks resume", body: "Diplomats met.", label: 1 },
    ]);
  });

  it("reads title,body CSV in any column order", () => {
    expect(articlesFromCsv("body,title\nsome text,A title\n")).toEqual([{ title: "A title", body: "some text" }]);
  });

  it("rejects unknown header layouts and short records with a clear error", () => {
    expect(() => articlesFromCsv("foo,bar\n1,2\n")).toThrow(/unknown header.*title.*body/);
    expect(() => articlesFromCsv("title,body\nonly-one\n")).toThrow(/record 2 has 1 column/);
  });
});

describe("articlesFromJsonl", () => {
  it("reads one object per line, body or description, optional fields", () => {
    const text = [
      JSON.stringify({ id: "a1", title: "T1", body: "B1", url: "https://x.test/1", source: "wire", publishedAt: "2024-01-01T00:00:00Z" }),
      "",
      JSON.stringify({ title: "T2", description: "D2", extra: true }),
    ].join("\n");
    expect(articlesFromJsonl(text)).toEqual([
      { id: "a1", title: "T1", body: "B1", url: "https://x.test/1", source: "wire", publishedAt: "2024-01-01T00:00:00Z" },
      { title: "T2", body: "D2" },
    ]);
  });

  it("names the line number of a bad line", () => {
    const good = JSON.stringify({ title: "T", body: "B" });
    expect(() => articlesFromJsonl(`${good}\n{not json\n`)).toThrow(/line 2: invalid JSON/);
    expect(() => articlesFromJsonl(`${good}\n${good}\n[1,2]`)).toThrow(/line 3: expected a JSON object/);
    expect(() => articlesFromJsonl(`${JSON.stringify({ body: "B" })}`)).toThrow(/line 1: missing string "title"/);
    expect(() => articlesFromJsonl(`${JSON.stringify({ title: "T" })}`)).toThrow(/line 1: missing string "body"/);
    expect(() => articlesFromJsonl(`${JSON.stringify({ title: "T", body: "B", url: 5 })}`)).toThrow(/line 1: "url" must be a string/);
  });
});

describe("pre-normalized variants (the stages pass the fetcher's normalized text)", () => {
  const raw = [
    { title: "Oil  Prices Rise &lt;b&gt;again&lt;/b&gt;", body: "Crude rose to  #36;50 a barrel, Mr. J. Smith of the U.S. Dept. said. It's the third rise.\\Analysts' views differ. Traders sold. OPEC meets." },
    { title: "Yankees beat Red Sox 5-3", body: "AP - The Yankees won. No. 5 Miami lost at home; fans' hopes faded." },
    { title: "Title only", body: "" },
  ];
  it("give the same answers as normalizing inside", async () => {
    for (const { title, body } of raw) {
      const t = normalizeText(title);
      const b = normalizeText(body);
      expect(classifyTopic(t, b, { normalized: true })).toEqual(classifyTopic(title, body));
      expect(summarize(b || t, { normalized: true })).toBe(summarize(body || title));
      expect(extractKeywords(t, b, 6, { normalized: true })).toEqual(extractKeywords(title, body, 6));
      expect(readingTimeMinutes(b ? `${t} ${b}` : t, 200, { normalized: true })).toBe(readingTimeMinutes(`${title} ${body}`));
      expect(await contentHashOfNormalized(t, b)).toBe(await contentHash(title, body));
    }
  });
});

describe("sha256HexSync (plain-JS SHA-256 used for content hashes and tool-cache keys)", () => {
  const webCrypto = async (text: string) => {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
    return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  };
  it("matches the FIPS 180-4 test vectors", () => {
    expect(sha256HexSync("")).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(sha256HexSync("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(sha256HexSync("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")).toBe("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  });
  it("matches WebCrypto at every padding boundary, on multi-byte UTF-8 and on long input", async () => {
    const inputs: string[] = [];
    for (let n = 0; n <= 200; n++) inputs.push(Array.from({ length: n }, (_, i) => String.fromCharCode(32 + ((i * 7 + n) % 95))).join(""));
    inputs.push("Pokémon – “quotes” € 😀 漢字", "x".repeat(10_000), "é".repeat(1_000));
    for (const text of inputs) expect(sha256HexSync(text)).toBe(await webCrypto(text));
  });
});
