// The README's example is examples/chat.mjs (which the integration tests
// run against the real gateway), so the two must not drift apart.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

test("the README's example is examples/chat.mjs as it runs", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const shown = /```js\n([\s\S]*?)```/.exec(readme);
  assert.ok(shown, "the README has a js example");
  const example = readFileSync(new URL("../../examples/chat.mjs", import.meta.url), "utf8");
  // The file's first line is its usage comment.
  assert.equal(shown[1], example.slice(example.indexOf("\n") + 1));
});
