/**
 * Runs a tests/fixtures/ script in a child Node process (so a test can kill -9
 * it) and resolves with the first JSON line it prints.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { nodeArgs } from "./node-entry";

export async function startFixture<T>(name: string, args: string[]): Promise<{ child: ChildProcess; info: T }> {
  const child = spawn(process.execPath, nodeArgs(`tests/fixtures/${name}`, args), { stdio: ["ignore", "pipe", "inherit"] });
  const info = await new Promise<T>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d) => {
      out += d;
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (line) resolve(JSON.parse(line) as T);
    });
    child.on("exit", (code) => reject(new Error(`fixture ${name} exited with ${code}`)));
  });
  return { child, info };
}
