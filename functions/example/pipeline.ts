/** The small example pipeline: normalize -> wordcount. */
import { definePipeline } from "../pipeline";
import { normalize } from "./normalize";
import { wordcount } from "./wordcount";

export const examplePipeline = definePipeline({ name: "example", stages: [normalize, wordcount] });
