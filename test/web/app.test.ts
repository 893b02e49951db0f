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
import { ORDER_ENERGY_WH_MAX, PRICE_MICRO_PER_KWH_MAX } from "../../ledger/tx.js";
import { decimalOfMicro, money, price } from "../../web/src/format.js";
import { BoxClock, ORDER_LEAD_MS, nextOrderIntervalStartMs, orderBody, parseEnergyWh, parsePriceMicroPerKWh, resultText } from "../../web/src/txs.js";

const CHROMIUM = "/usr/bin/chromium";
const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 1 } as const;
const DESKTOP = { viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 } as const;
const STEP_MS = 20_000;
const ADMIN_TOKEN = "web-test-admin-token";

/** WCAG 2 contrast ratio of two CSS rgb() colours. */
function contrast(a: string, b: string): number {
  const luminance = (css: string) => {
    const [r, g, bl] = (css.match(/[0-9.]+/g) ?? []).slice(0, 3).map((v) => {
      const c = Number(v) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    }) as [number, number, number];
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number];
  return (hi + 0.05) / (lo + 0.05);
}

describe("what the page signs: the order form's numbers, exactly", () => {
  it("a price typed in currency units becomes integer micro-units per kWh by its digits, never rounded or wrapped", () => {
    const cases: [string, number][] = [["0.15", 150_000], ["0.29", 290_000], ["1.005", 1_005_000], ["0.000001", 1], [".5", 500_000], ["2", 2_000_000], ["007.25", 7_250_000], [" 0.150 ", 150_000], ["1099511.627775", PRICE_MICRO_PER_KWH_MAX]];
    for (const [text, micro] of cases) assert.equal(parsePriceMicroPerKWh(text), micro, text);
    // Every price of up to 6 decimals from 0 to 3 per kWh, against integer arithmetic on the digits.
    for (let micro = 0; micro <= 3_000_000; micro += 997) {
      const text = `${Math.floor(micro / 1_000_000)}.${String(micro % 1_000_000).padStart(6, "0")}`;
      assert.equal(parsePriceMicroPerKWh(text), micro, text);
    }
    for (const [text, why] of [["0.1234567", /at most 6 decimal places/], ["1e3", /plain number/], ["-1", /plain number/], ["", /plain number/], [".", /plain number/], ["0x10", /plain number/], ["1099511.627776", /at most 1099511.627775/], ["99999999999999999999", /at most/]] as const) {
      assert.throws(() => parsePriceMicroPerKWh(text), why, text);
    }
  });

  it("energy is whole Wh within what an order carries, and orderBody takes integers only", () => {
    assert.equal(parseEnergyWh(" 700 "), 700);
    for (const text of ["0", "1.5", "1e3", "-5", "", String(ORDER_ENERGY_WH_MAX + 1)]) assert.throws(() => parseEnergyWh(text), /energy/, text);
    const body = orderBody({ side: "sell", energyWh: 700, priceMicroPerKWh: 150_000 }, 120_000, 60_000);
    assert.deepEqual(body, { type: "order", side: "sell", energyWh: 700, priceMicroPerKWh: 150_000, intervalStartMs: 120_000, expiresAtMs: 180_000, flags: 0, counterparty: null });
    assert.throws(() => orderBody({ side: "buy", energyWh: 700, priceMicroPerKWh: 0.5 }, 120_000, 60_000), /price/);
    assert.throws(() => orderBody({ side: "buy", energyWh: 700, priceMicroPerKWh: PRICE_MICRO_PER_KWH_MAX + 1 }, 120_000, 60_000), /price/);
  });

  it("money and prices are shown from their integers, rounded half away from zero, with no float on the way", () => {
    assert.equal(money(1_005_000), "1.01");
    assert.equal(money(-1_005_000), "-1.01");
    assert.equal(money(-2_500), "0.00", "not -0.00");
    assert.equal(money(0), "0.00");
    assert.equal(money(123_456_789_012), "123456.79");
    assert.equal(price(150_500), "0.151 /kWh");
    assert.equal(price(150_000), "0.150 /kWh");
    assert.equal(price(PRICE_MICRO_PER_KWH_MAX), "1099511.628 /kWh");
    assert.equal(decimalOfMicro(7, 6), "0.000007");
    assert.equal(decimalOfMicro(1_500_000, 0), "2");
    assert.equal(decimalOfMicro(0.5, 2), "?");
  });

  it("a ledger refusal is said in words, with its code", () => {
    assert.equal(resultText("orderPrice"), "the price is outside the market's limits (orderPrice)");
    assert.equal(resultText("somethingNew"), "somethingNew");
    assert.equal(resultText("constructor"), "constructor", "no inherited property taken for words");
  });
});

describe("the box's clock as the page sees it, and the interval an order is for", () => {
  it("a box on a real clock runs at rate 1; a demo's box at its speed, whole; a chain time that goes back starts over", () => {
    const real = new BoxClock();
    // A status every 3 s; the last block's time lags the box's clock by up to a second.
    for (let t = 0; t <= 30_000; t += 3_000) real.observe(1_000_000 + t, 5_000_000 + t - (t % 1_000) - 400);
    assert.equal(real.rate, 1);
    assert.ok(Math.abs(real.now(1_031_000) - 5_030_600) <= 1_000);
    const demo = new BoxClock();
    // --speed 15: a block a real second, each 15 s of the box's time after the last.
    for (let t = 0; t <= 30_000; t += 3_000) demo.observe(2_000_000 + t, 9_000_000 + 15 * (t - (t % 1_000)) - 15 * 700);
    assert.equal(demo.rate, 15);
    const nowBox = demo.now(2_032_000);
    assert.ok(Math.abs(nowBox - (9_000_000 + 15 * 32_000)) <= 15 * 1_000, `${nowBox}`);
    // Before 10 s of samples the rate is not known: 1.
    const fresh = new BoxClock();
    fresh.observe(0, 1_000_000);
    fresh.observe(3_000, 1_045_000);
    assert.equal(fresh.rate, 1);
    // A chain time that goes back (another box's chain): the samples start over, the rate is kept until re-measured.
    demo.observe(2_035_000, 100);
    assert.equal(demo.now(2_035_000), 100);
  });

  it("the lead before an interval is ORDER_LEAD_MS of real time, however fast the box's clock runs", () => {
    const intervalMs = 900_000;
    // 30 s of the box's time before a boundary: enough at rate 1, two real seconds at rate 15.
    assert.equal(nextOrderIntervalStartMs(870_000, intervalMs), 900_000);
    assert.equal(nextOrderIntervalStartMs(870_000, intervalMs, 15), 1_800_000);
    assert.equal(nextOrderIntervalStartMs(900_000 - 15 * ORDER_LEAD_MS - 1, intervalMs, 15), 900_000);
  });
});

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
    assert.equal((await fetch(`${base}/app.js`, { headers: { "if-none-match": `W/"old", W/${etag}` } })).status, 304, "a list of tags, weak ones too");
    assert.equal((await fetch(`${base}/app.js`, { headers: { "if-none-match": `"old"` } })).status, 200);
    assert.match(html.headers.get("content-security-policy") ?? "", /require-trusted-types-for 'script'; trusted-types peergrid/);
    assert.equal((await fetch(`${base}/sw.js`)).headers.get("cache-control"), "no-cache", "a new service worker is seen at once");
    assert.equal((await fetch(`${base}/../package.json`)).status, 404, "only the app's own files");
    assert.equal((await fetch(`${base}/web/index.html`)).status, 404);
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

  it("opens from the service worker's cache when the box cannot be reached, a query string and all; says so legibly in the dark", { timeout: 60_000 }, async () => {
    const ctx = await browser.newContext({ ...PHONE, colorScheme: "dark" });
    try {
      const p = await ctx.newPage();
      await p.goto(base);
      await p.waitForSelector("#app[data-sw=registered]");
      // Trusted Types: a string can never become markup on this page, whoever tries (here, not on the watched page).
      assert.equal(await p.evaluate<string>(`(() => { try { document.createElement("div").innerHTML = "<b>x</b>"; return "assigned"; } catch (e) { return e.name; } })()`), "TypeError");
      await p.evaluate("navigator.serviceWorker.ready");
      await p.reload(); // now under the worker's control
      await p.waitForSelector("#app[data-ready=true]");
      await ctx.setOffline(true);
      await p.goto(`${base}/?from=home-screen`);
      await p.waitForSelector("#app[data-ready=true]");
      assert.equal((await p.textContent("#conn"))?.trim(), "box not answering");
      const [fg, bg] = await p.evaluate<[string, string]>(`[getComputedStyle(document.getElementById("conn")).color, getComputedStyle(document.body).backgroundColor]`);
      assert.ok(contrast(fg, bg) >= 4.5, `"box not answering" is ${fg} on ${bg}: contrast ${contrast(fg, bg).toFixed(2)}, under WCAG AA's 4.5`);
    } finally {
      await ctx.close();
    }
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

  it("refuses a price it cannot sign exactly before sending, and says why the ledger refused an order, in words", { timeout: 60_000 }, async () => {
    await page.locator("#market").scrollIntoViewIfNeeded();
    const posted = () => requests.filter((u) => u === `${base}/api/v1/tx`).length;
    const before = posted();
    await page.fill("#energy", "700");
    await page.fill("#price-input", "2000000"); // over what an order can carry: once rounded and sent, refused by the box as undecodable
    await page.click("#place-order");
    await page.locator("#messages .msg.error", { hasText: "Not sent: the price per kWh is at most 1099511.627775." }).waitFor({ timeout: STEP_MS });
    assert.equal(posted(), before, "nothing signed, nothing sent");
    await page.fill("#price-input", "3"); // within what an order carries, above the genesis' 2.00 per kWh
    await page.click("#place-order");
    const refused = page.locator("#messages .msg.error[role=alert]", { hasText: "refused by the ledger: the price is outside the market's limits (orderPrice)" });
    await refused.waitFor({ timeout: STEP_MS });
    assert.deepEqual(myOrders(), []);
    assert.deepEqual(problems, []);
  });

  it("an unexpected failure while signing is shown to the neighbour, not lost in the console", { timeout: 60_000 }, async () => {
    // A box whose answer the page cannot sign for (a damaged chain hash): the page says so.
    const ctx = await browser.newContext({ ...PHONE, serviceWorkers: "block" });
    const errors: string[] = [];
    try {
      await ctx.route("**/api/v1/members/by-key/*", (route) =>
        route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify({ chainHash: "not-hex", height: 1, member: { index: 7, name: "x", roles: ["user"], active: true, lastSeq: 0, openOrders: 0 } }) }),
      );
      await ctx.route("**/api/v1/tx", (route) => route.abort());
      const p = await ctx.newPage();
      p.on("pageerror", (e) => errors.push(e.message));
      await p.goto(base);
      await p.waitForSelector("#app[data-enrolment=enrolled]");
      await p.click("#place-order");
      await p.locator("#messages .msg.error", { hasText: /Something went wrong, nothing was sent: not a 32-byte hex id: not-hex/ }).waitFor({ timeout: STEP_MS });
      assert.deepEqual(errors, []);
    } finally {
      await ctx.close();
    }
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
