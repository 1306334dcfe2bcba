/** Example stage 1: trims and collapses whitespace, splits words. */
import { z } from "zod";
import { defineStage } from "../pipeline";

export const normalize = defineStage({
  name: "normalize",
  input: z.object({ text: z.string().min(1).max(10_000) }),
  next: ["wordcount"],
  handle: ({ text }) => {
    const clean = text.replace(/\s+/g, " ").trim();
    return { emit: [{ payload: { text: clean } }], result: { chars: clean.length } };
  },
});
