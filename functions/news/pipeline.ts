/** The news pipeline: fetcher -> classifier -> enricher -> fanout (ingest starts the runs). */
import { definePipeline } from "../pipeline";
import { classifier } from "./stages/classifier";
import { enricher } from "./stages/enricher";
import { fanout } from "./stages/fanout";
import { fetcher } from "./stages/fetcher";

/** Runs show five steps: ingest (the trigger, recorded at enqueue) + the four stages. */
export const newsPipeline = definePipeline({ name: "news", triggerStep: "ingest", stages: [fetcher, classifier, enricher, fanout] });
