// The official openai JavaScript SDK against a gateway over the fake core (tests/labs_gateway/fakes.py):
// one JSON line per scenario, checked by test_sdk_js.py. Usage: node sdk_check.mjs <base url>
import OpenAI from "openai";

const client = new OpenAI({ baseURL: `${process.argv[2]}/v1`, apiKey: "unused", maxRetries: 0, timeout: 30000 });
const TIME_TOOL = { type: "function", name: "get_time", parameters: { type: "object", properties: { zone: { type: "string" } } } };

async function scenario(name, run) {
  try {
    console.log(JSON.stringify({ name, ok: true, ...(await run()) }));
  } catch (error) {
    console.log(JSON.stringify({ name, ok: false, status: error.status ?? null, code: error.code ?? null,
                                 param: error.param ?? null, message: String(error.message) }));
  }
}

await scenario("chat", async () => {
  const out = await client.chat.completions.create({ model: "fake-chat", messages: [{ role: "user", content: "hi" }] });
  return { text: out.choices[0].message.content, finish: out.choices[0].finish_reason, total: out.usage.total_tokens };
});

await scenario("chat-stream", async () => {
  const stream = await client.chat.completions.create({ model: "fake-tools", messages: [{ role: "user", content: "x" }],
                                                         stream: true, stream_options: { include_usage: true } });
  let text = "", args = "", usage = null, finish = null;
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta ?? {};
    text += delta.content ?? "";
    for (const call of delta.tool_calls ?? []) args += call.function?.arguments ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
    if (chunk.usage) usage = chunk.usage.total_tokens;
  }
  return { text, args, finish, usage };
});

await scenario("chat-stream-helper", async () => {
  const runner = client.chat.completions.stream({ model: "fake-tools", messages: [{ role: "user", content: "x" }] });
  const done = await runner.finalChatCompletion();
  const call = done.choices[0].message.tool_calls[0];
  return { text: done.choices[0].message.content, tool: call.function.name, args: call.function.arguments };
});

for (const model of ["fake-tools", "fake-reasoning", "fake-finance"]) {
  await scenario(`responses-stream:${model}`, async () => {
    const stream = client.responses.stream({ model, input: "go", tools: [TIME_TOOL] });
    let deltas = "";
    stream.on("response.output_text.delta", (event) => { deltas += event.delta; });
    const final = await stream.finalResponse();
    return { deltas, text: final.output_text, status: final.status, items: final.output.map((o) => o.type),
             args: final.output.filter((o) => o.type === "function_call").map((o) => o.arguments) };
  });
  await scenario(`responses:${model}`, async () => {
    const out = await client.responses.create({ model, input: "go", tools: [TIME_TOOL] });
    return { text: out.output_text, status: out.status, items: out.output.map((o) => o.type),
             input_tokens: out.usage.input_tokens };
  });
}

await scenario("embeddings-default-base64", async () => {
  const out = await client.embeddings.create({ model: "fake-embed", input: ["a", "b"] });  // the SDK asks for base64
  return { count: out.data.length, dims: out.data[0].embedding.length, kind: typeof out.data[0].embedding[0] };
});

await scenario("bad-request", async () => {
  await client.chat.completions.create({ model: "fake-chat", messages: [] });
  return {};
});
