/**
 * Every Lua script is one file with a header listing its keys, arguments and
 * return value, and the generated module Workers import is up to date.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { renderLuaModule } from "../worker-host/tools/gen-lua";

const root = join(__dirname, "..");

describe("lua scripts", () => {
  it("functions/lua.generated.ts matches lua/*.lua (run npm run gen:lua)", () => {
    expect(readFileSync(join(root, "functions", "lua.generated.ts"), "utf8")).toBe(renderLuaModule());
  });

  it.each(readdirSync(join(root, "lua")).filter((f) => f.endsWith(".lua")))("%s documents KEYS, ARGV and returns in its header", (file) => {
    const text = readFileSync(join(root, "lua", file), "utf8");
    const header = text.slice(0, text.indexOf("]]"));
    expect(header.startsWith("--[[")).toBe(true);
    expect(header).toMatch(/Returns/);
    const usesKeys = /KEYS\[/.test(text.slice(header.length));
    if (usesKeys) expect(header).toMatch(/KEYS\[1\]/);
    const usesArgv = /ARGV\[/.test(text.slice(header.length));
    if (usesArgv) expect(header).toMatch(/ARGV\[1\]/);
  });
});
