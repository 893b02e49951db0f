// The neighbours' web app end to end: a real box (its ledger and Raft log on
// disk) serves the API and the app over a real socket, and Debian's Chromium
// (playwright-core, never a downloaded browser) drives the page at a phone's
// size: it makes a key, explains enrolment, and once an admin enrols the key
// it signs a sell order, cancels it and votes, each checked in the box's
// ledger; an island transaction shows the outage banner. Every request the
// page makes must go to the box (it must work with no internet). Screenshots
// go to a temporary folder, or with PEERGRID_SCREENSHOTS=1 to web/screenshots/
// (the README's: `PEERGRID_SCREENSHOTS=1 node --test dist/test/web/app.test.js`).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { type Browser, type BrowserContext, type Page, chromium } from "playwright-core";
import { BoxSequence } from "../../daemon/box-sequence.js";
import { buildHttp } from "../../daemon/http.js";
import type { BoxNode } from "../../daemon/node.js";
import { findWebRoot, registerWebApp } from "../../daemon/web.js";
import { toHex } from "../../ledger/hash.js";
import type { NodeSigner } from "../../ledger/keys.js";
import { type OrderRecord, voteKey } from "../../ledger/records.js";
import { Quality, Role, type TxBody } from "../../ledger/tx.js";
import { BoxCluster } from "../helpers/box-cluster.js";
import { ORDER_LEAD_MS, nextOrderIntervalStartMs } from "../../web/src/txs.js";

const CHROMIUM = "/usr/bin/chromium";
const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 1 } as const;
const DESKTOP = { viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 } as const;
const STEP_MS = 20_000;
const ADMIN_TOKEN = "web-test-admin-token";

describe("web app in Chromium", () => {
  assert.ok(existsSync(CHROMIUM), `no ${CHROMIUM}: apt-get install chromium (.ci/run does)`);
  const c = new BoxCluster(1, { extraMembers: 1, genesis: { market: { intervalMs: 60_000 } } });
  const webRoot = findWebRoot();
  const shots = process.env.PEERGRID_SCREENSHOTS === "1" ? join(webRoot, "screenshots") : mkdtempSync(join(tmpdir(), "pg-web-shots-"));
  let node: BoxNode;
  let app: FastifyInstance;
  let admin: BoxSequence;
  let base: string;
  let browser: Browser;
  let phone: BrowserContext;
  let page: Page;
  let me = -1;
  const requests: string[] = [];
  const problems: string[] = [];

  /** The admin box signs and submits; resolves once the ledger took it. */
  const adminTx = async (body: TxBody) => {
    const { tx, out } = await admin.submit(body);
    assert.equal(out.ok, true, JSON.stringify(out));
    const fate = await c.waitFor(`${body.type} committed`, () => {
      const f = node.fate(tx.id);
      return f.status === "committed" || f.status === "rejected" ? f : null;
    });
    assert.equal(fate.status === "committed" && fate.result, "ok", JSON.stringify(fate));
    return tx;
  };
  const myOrders = () => [...node.ledger.state.tree.entries()].flatMap((e) => (e.value.kind === "order" && e.value.author === me ? [e.value as OrderRecord] : []));
  const watch = (p: Page) => {
    p.on("request", (r) => requests.push(r.url()));
    p.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    p.on("console", (m) => {
      if (m.type() === "error" && !/404|Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
    });
  };

  before(async () => {
    if (!existsSync(join(webRoot, "dist", "app.js"))) execFileSync(process.execPath, [join(webRoot, "..", "scripts", "build-web.mjs")], { stdio: "inherit" });
    mkdirSync(shots, { recursive: true });
    node = await c.start(0);
    await c.waitFor("leadership", () => node.role === "leader" && node.ledger.state.height >= 1);
    admin = new BoxSequence(node, c.signers[0] as NodeSigner, 0);
    app = buildHttp(node, { adminToken: ADMIN_TOKEN, sequence: admin });
    await registerWebApp(app);
    await app.listen({ port: 0, host: "127.0.0.1" });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM });
    phone = await browser.newContext(PHONE);
    page = await phone.newPage();
    watch(page);
  });
  after(async () => {
    if (process.env.PEERGRID_SCREENSHOTS !== "1") rmSync(shots, { recursive: true, force: true });
    await browser?.close();
    await app?.close();
    await c.close();
  });

  it("serves the app from the box with a same-origin-only policy", async () => {
    const html = await fetch(`${base}/`);
    assert.equal(html.status, 200);
    assert.match(html.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(html.headers.get("content-security-policy") ?? "", /default-src 'self'/);
    const js = await fetch(`${base}/app.js`);
    assert.match(js.headers.get("content-type") ?? "", /^text\/javascript/);
    const etag = js.headers.get("etag") as string;
    assert.equal((await fetch(`${base}/app.js`, { headers: { "if-none-match": etag } })).status, 304);
    assert.match(await (await fetch(`${base}/app.css`)).text(), /prefers-color-scheme: dark/);
    assert.equal((await fetch(`${base}/api/v1/status`)).status, 200, "the API is still there");
  });

  it("on a phone: makes a key, shows it and explains enrolment; nothing leaves the box", { timeout: 60_000 }, async () => {
    await page.goto(base);
    await page.waitForSelector("#app[data-ready=true]");
    assert.equal(await page.getAttribute("#app", "data-key-created"), "true");
    const key = (await page.textContent("#public-key"))?.trim() ?? "";
    assert.match(key, /^[0-9a-f]{64}$/);
    assert.equal(await page.getAttribute("#app", "data-enrolment"), "not-enrolled");
    const explanation = (await page.textContent("#enrolment")) ?? "";
    assert.match(explanation, /not enrolled/);
    assert.ok(explanation.includes(`peergrid propose --enrol YOURNAME:user:${key}`), explanation);
    assert.equal(await page.isDisabled("#place-order"), true, "no trading before enrolment");
    // The key survives a reload (kept in localStorage).
    await page.reload();
    await page.waitForSelector("#app[data-ready=true]");
    assert.equal(await page.getAttribute("#app", "data-key-created"), "false");
    assert.equal((await page.textContent("#public-key"))?.trim(), key);
    // Mobile first: nothing wider than the phone.
    assert.ok((await page.evaluate<number>("document.documentElement.scrollWidth")) <= PHONE.viewport.width);
    await page.locator("#key").scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(shots, "phone-enrol.png") });
    // The service worker registers (127.0.0.1 is a secure context) and the shell is in its cache.
    await page.waitForSelector("#app[data-sw=registered]");
    // (Strings, not functions: this file is compiled without the DOM's types.)
    const cached = await page.evaluate<string[]>(`(async () => {
      await navigator.serviceWorker.ready;
      const cache = await caches.open("peergrid-shell-v1");
      return (await cache.keys()).map((r) => new URL(r.url).pathname).sort();
    })()`);
    assert.deepEqual(cached, ["/", "/app.css", "/app.js", "/manifest.webmanifest"]);
    const foreign = requests.filter((u) => !u.startsWith(`${base}/`));
    assert.deepEqual(foreign, [], "every request goes to the box");
    assert.deepEqual(problems, []);
  });

  it("once an admin enrols the key, the page shows the member number", { timeout: 60_000 }, async () => {
    const key = ((await page.textContent("#public-key")) ?? "").trim();
    // As the box's owner would: the admin route, which signs the member transaction with the box's key.
    const r = await fetch(`${base}/api/v1/admin/members`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ publicKey: key, name: "browser-neighbour", roles: ["user"] }),
    });
    assert.equal(r.status, 202, await r.text());
    await page.waitForSelector("#app[data-enrolment=enrolled]", { timeout: STEP_MS });
    me = Number(await page.textContent("#member-no"));
    assert.equal(me, 2, "genesis has members 0 and 1");
    assert.match((await page.textContent("#enrolment")) ?? "", /Enrolled as member 2/);
    assert.equal(await page.isDisabled("#place-order"), false);
  });

  it("shows the power of the box's meter now and as a chart of today", { timeout: 60_000 }, async () => {
    const t = Date.now();
    for (const [i, ago] of [480_000, 240_000, 0].entries()) {
      await adminTx({ type: "reading", meterId: 0, timeMs: t - ago, importWh: 10_000 + i * 100, exportWh: 0, powerW: 1_200 + i * 100, voltagesDeciV: [2300], frequencyMilliHz: 50_000, quality: Quality.good });
    }
    await page.locator("#power-now", { hasText: "1400 W" }).waitFor({ timeout: STEP_MS });
    assert.match((await page.textContent("#meters-of")) ?? "", /(box-0|member 0) \(this box\)/);
    assert.equal(await page.locator("#my-power svg.chart path.line").count(), 1);
  });

  it("places a sell order signed in the browser, lists it, and cancels it", { timeout: 90_000 }, async () => {
    // The book shows the next interval an order can be for; it moves on ORDER_LEAD_MS before each boundary. Place
    // the order with at least 30 s before it moves, so the order is still in the interval the page shows.
    const nowMs = Date.now();
    const movesAt = nextOrderIntervalStartMs(nowMs, 60_000) - ORDER_LEAD_MS;
    if (movesAt - nowMs < 30_000) await new Promise((r) => setTimeout(r, movesAt - nowMs + 1_500));
    await page.locator("#market").scrollIntoViewIfNeeded();
    await page.check("input[name=side][value=sell]");
    await page.fill("#energy", "700");
    await page.fill("#price-input", "0.15");
    await page.click("#place-order");
    const [order] = await c.waitFor("the order in the ledger", () => (myOrders().length === 1 ? myOrders() : null), STEP_MS);
    assert.ok(order !== undefined);
    assert.equal(order.side, "sell");
    assert.equal(order.energyWh, 700);
    assert.equal(order.priceMicroPerKWh, 150_000);
    assert.equal(order.intervalStartMs % 60_000, 0);
    assert.ok(order.intervalStartMs > node.ledger.state.timeMs);
    const id = toHex(order.id);
    const row = page.locator(`#my-orders [data-order-id="${id}"]`);
    await row.waitFor({ timeout: STEP_MS });
    assert.match((await row.textContent()) ?? "", /sell.*700 Wh.*0\.150/);
    // And in the order book of the next interval.
    await page.locator(`#book [data-order-id="${id}"]`).waitFor({ timeout: STEP_MS });
    await page.waitForSelector("#messages .msg.ok");
    await page.locator("#market").scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(shots, "phone-market.png") });
    await row.locator("button[data-cancel]").click();
    await c.waitFor("the order gone from the ledger", () => myOrders().length === 0, STEP_MS);
    await row.waitFor({ state: "detached", timeout: STEP_MS });
    assert.deepEqual(problems, []);
  });

  it("shows the outage banner when the ledger says the neighbourhood is islanded", { timeout: 60_000 }, async () => {
    assert.equal(await page.isVisible("#island-banner"), false);
    await adminTx({ type: "member", action: "setRoles", subject: 0, roles: Role.box | Role.admin | Role.controller });
    const t = Date.now();
    await adminTx({ type: "island", islanded: true, timeMs: t, reason: "UV1", measured: 1_500 });
    await adminTx({ type: "switch", premise: 1, breaker: 0, close: true, readback: "closed", timeMs: t + 1, reason: "supplied", supplyW: 3_000, demandW: 800 });
    await page.waitForSelector("#island-banner:not([hidden])", { timeout: STEP_MS });
    // (Locators, not waitForFunction: the page's CSP forbids evaluating strings, as it should.)
    await page.locator("#island-banner", { hasText: /powered: / }).waitFor({ timeout: STEP_MS });
    const text = (await page.textContent("#island-banner")) ?? "";
    assert.match(text, /^Grid outage: the neighbourhood is islanded since \d\d:\d\d; powered: (user-1|member 1)\./);
    await page.evaluate("window.scrollTo(0, 0)");
    await page.screenshot({ path: join(shots, "phone-outage.png") });
  });

  it("lists an open critical-load proposal with Yes/No, and records the browser's vote", { timeout: 60_000 }, async () => {
    const h = node.ledger.state.height;
    const proposal = await adminTx({ type: "proposal", action: { kind: "criticalLoads", premises: [1] }, votingEndsHeight: h + 4_000, effectiveHeight: h + 4_001 }); // the genesis minimum is 3,600 blocks
    const pid = toHex(proposal.id);
    const item = page.locator(`#proposals [data-proposal="${pid}"]`);
    await item.waitFor({ timeout: STEP_MS });
    assert.match((await item.textContent()) ?? "", /Critical-load list: (user-1|member 1)/);
    await page.locator("#community").scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(shots, "phone-community.png") });
    await item.locator("button[data-vote=yes]").click();
    const vote = await c.waitFor("the vote in the ledger", () => node.ledger.state.tree.get(voteKey(proposal.id, me)), STEP_MS);
    assert.equal(vote.kind === "vote" && vote.approve, true);
    await page.locator(`#proposals [data-proposal="${pid}"]`, { hasText: /You voted yes/ }).waitFor({ timeout: STEP_MS });
    assert.match((await item.textContent()) ?? "", /yes 1/);
    assert.deepEqual(problems, []);
    assert.deepEqual(requests.filter((u) => !u.startsWith(`${base}/`)), []);
  });

  it("lays out on a desktop screen too, and the phone screenshot of Now", { timeout: 60_000 }, async () => {
    await page.evaluate("window.scrollTo(0, 0)");
    await page.screenshot({ path: join(shots, "phone-now.png") });
    const desk = await browser.newContext(DESKTOP);
    try {
      const p = await desk.newPage();
      watch(p);
      await p.goto(base);
      await p.waitForSelector("#app[data-ready=true]");
      assert.ok((await p.evaluate<number>("document.documentElement.scrollWidth")) <= DESKTOP.viewport.width);
      assert.equal(await p.getAttribute("#app", "data-enrolment"), "not-enrolled", "another browser has its own key");
      await p.screenshot({ path: join(shots, "desktop.png") });
    } finally {
      await desk.close();
    }
    assert.deepEqual(requests.filter((u) => !u.startsWith(`${base}/`)), []);
    assert.deepEqual(problems, []);
  });
});
