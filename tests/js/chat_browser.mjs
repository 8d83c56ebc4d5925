// The chat example end to end, as a user sees it: a real gangway node, the example backend,
// and two pages in headless Chromium (Debian's, driven by playwright-core). Two people join,
// one sends, both see the message; one's socket is killed and a message sent while it is away
// reaches it once after it reconnects (recovery); one closes the page, the other sees them leave.
//
// Usage: node tests/js/chat_browser.mjs <gangway binary>   (scripts/test.sh runs it)
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const gangway = path.resolve(process.argv[2] ?? "target/debug/gangway");
const browserPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const children = [];
const deadline = setTimeout(() => fail("the test took longer than 90 s"), 90_000);

function fail(why) {
  console.error(`chat_browser: FAILED: ${why}`);
  for (const c of children) c.kill("SIGKILL");
  process.exit(1);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

function start(cmd, args, env) {
  const child = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d) => { out += d; });
  child.stderr.on("data", (d) => { out += d; });
  child.output = () => out;
  children.push(child);
  return child;
}

async function until(what, check, ms = 15_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { if (await check()) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  fail(`timed out waiting for ${what}`);
}

const [ws, control, web] = [await freePort(), await freePort(), await freePort()];
const backend = start("python3", ["examples/chat/backend.py"], {
  CHAT_LISTEN: `127.0.0.1:${web}`,
  GANGWAY_CONTROL_URL: `http://127.0.0.1:${control}`,
  GANGWAY_WS_URL: `ws://127.0.0.1:${ws}/`,
});
// The example's own config, with this run's ports (the file's backend is on 3001).
const dir = mkdtempSync(path.join(tmpdir(), "gangway-chat-"));
const config = path.join(dir, "gateway.toml");
writeFileSync(
  config,
  readFileSync(path.join(root, "examples/chat/gateway.toml"), "utf8").replaceAll("127.0.0.1:3001", `127.0.0.1:${web}`),
);
const node = start(gangway, ["--config", config], {
  GANGWAY_LISTEN_WEBSOCKET: `127.0.0.1:${ws}`,
  GANGWAY_LISTEN_CONTROL: `127.0.0.1:${control}`,
  RUST_LOG: "warn",
});
await until("the gateway", async () => (await fetch(`http://127.0.0.1:${control}/readyz`)).ok);
await until("the backend", async () => (await fetch(`http://127.0.0.1:${web}/`)).ok);

const browser = await chromium.launch({ executablePath: browserPath, args: ["--no-sandbox"] });
const page = async (name) => {
  const p = await browser.newPage();
  await p.goto(`http://127.0.0.1:${web}/`);
  await p.fill("#name", name);
  await p.click("#join button");
  await p.waitForSelector("#text:not([disabled])", { timeout: 10_000 });
  return p;
};
const logOf = (p) => p.locator("#log").innerText();
const expectLine = async (p, who, line) =>
  until(`${who} to see "${line}"`, async () => (await logOf(p)).split("\n").includes(line));

try {
  const alice = await page("alice");
  const bob = await page("bob");
  await expectLine(alice, "alice", "bob joined");
  await alice.fill("#text", "hello from alice");
  await alice.click("#sendbtn");
  await expectLine(alice, "alice", "alice: hello from alice");
  await expectLine(bob, "bob", "alice: hello from alice");
  // Bob's socket dies (as on a train); he is away 4 s (the page's backoff), and a message is
  // sent meanwhile: after the reconnect his page shows it once, recovered from the history.
  await bob.evaluate(() => { retry = 3; socket.close(); });
  await expectLine(alice, "alice", "bob left");
  await alice.fill("#text", "while you were away");
  await alice.click("#sendbtn");
  await expectLine(alice, "alice", "alice: while you were away");
  await until("bob to reconnect", async () => (await bob.locator("#status").innerText()).startsWith("connected"));
  await expectLine(bob, "bob", "alice: while you were away");
  const seen = (await logOf(bob)).split("\n").filter((l) => l === "alice: while you were away");
  if (seen.length !== 1) fail(`bob saw the missed message ${seen.length} times`);
  await bob.close();
  await until("alice to see bob leave again", async () =>
    (await logOf(alice)).split("\n").filter((l) => l === "bob left").length === 2);
  await browser.close();
} catch (e) {
  fail(`${e}\n--- gangway ---\n${node.output()}\n--- backend ---\n${backend.output()}`);
}
clearTimeout(deadline);
for (const c of children) c.kill("SIGTERM");
rmSync(dir, { recursive: true, force: true });
console.log("chat_browser: two pages joined, exchanged a message, recovered one missed while away and saw one leave: ok");
