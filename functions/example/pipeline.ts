/**
 * The small example pipeline: normalize -> wordcount. Its default export is
 * what the host runs: `npm start -- --pipeline functions/example/pipeline.ts`.
 */
import { definePipeline } from "../pipeline";
import { normalize } from "./normalize";
import { wordcount } from "./wordcount";

export const examplePipeline = definePipeline({ name: "example", stages: [normalize, wordcount] });
export default examplePipeline;
