// Drives a running `troupe serve` with the official OpenAI client: completions and chat, streaming
// and not, n = 2 with a seed, stop strings, usage, and the client's error type for a bad request.
// Usage: node openai_client.mjs BASE_URL MODEL EXPECTED_GREEDY_TEXT
import assert from "node:assert/strict";
import OpenAI from "openai";

const [baseURL, model, expected] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const strip = (s) => s.replace(/^\s+/, "");

const greedy = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 64, temperature: 0 });
assert.equal(strip(greedy.choices[0].text), strip(expected));
assert.equal(greedy.choices[0].finish_reason, "length");
assert.deepEqual([greedy.usage.prompt_tokens, greedy.usage.completion_tokens], [5, 64]);

let streamed = "";
const stream = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 64, temperature: 0, stream: true });
for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? "";
assert.equal(streamed, greedy.choices[0].text);

const chat = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 16, temperature: 0 });
assert.equal(chat.choices[0].message.role, "assistant");
let chatStreamed = "";
const chatStream = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 16, temperature: 0,
  stream: true, stream_options: { include_usage: true },
});
let usage = null;
for await (const chunk of chatStream) {
  chatStreamed += chunk.choices[0]?.delta?.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
assert.equal(chatStreamed, chat.choices[0].message.content);
assert.equal(usage.completion_tokens, chat.usage.completion_tokens);

const a = await client.completions.create({ model, prompt: "Lily", max_tokens: 20, temperature: 1, n: 2, seed: 11 });
const b = await client.completions.create({ model, prompt: "Lily", max_tokens: 20, temperature: 1, n: 2, seed: 11 });
assert.equal(a.choices.length, 2);
assert.deepEqual(a.choices.map((c) => c.text), b.choices.map((c) => c.text));

const stopped = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 64, temperature: 0, stop: ["Lily"] });
assert.equal(stopped.choices[0].finish_reason, "stop");
assert.ok(!stopped.choices[0].text.includes("Lily"));

await assert.rejects(
  client.completions.create({ model: "no-such-model", prompt: "x" }),
  (err) => err instanceof OpenAI.NotFoundError && err.status === 404,
);
await assert.rejects(
  client.completions.create({ model, prompt: "x", temperature: -3 }),
  (err) => err instanceof OpenAI.BadRequestError && err.status === 400,
);
console.log("openai client: all checks passed");
