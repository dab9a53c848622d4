// drive.mjs runs calls of the npm package piston-client, unmodified,
// against a Piston server and prints what each returned, as JSON. It
// reads {"server": URL, "calls": [...]} on stdin; a call is
// {"op": "runtimes"} or {"op": "execute", "language", "code", "config"},
// which is client.execute(language, code, config).
import { piston } from "piston-client";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { server, calls } = JSON.parse(input);

const client = piston({ server });
const out = [];
for (const call of calls) {
  const started = Date.now();
  let answer;
  switch (call.op) {
    case "runtimes":
      answer = await client.runtimes();
      break;
    case "execute":
      answer = await client.execute(call.language, call.code, call.config || {});
      break;
    default:
      throw new Error(`unknown op ${call.op}`);
  }
  // The client hides transport errors in {success: false, error}.
  if (answer && answer.error instanceof Error) answer.error = String(answer.error);
  out.push({ answer, ms: Date.now() - started });
}
process.stdout.write(JSON.stringify(out));
