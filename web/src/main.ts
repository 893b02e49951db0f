// The neighbours' web app: one page, four sections (Now, Market, Community,
// Key), drawn from the box's API every few seconds (and at once on a live
// event when the box streams them). Orders, cancels and votes are signed here
// with this browser's key (key.ts) through the ledger's own encoder
// (ledger/tx.ts), so the box only relays what the neighbour signed.
import { toHex } from "../../ledger/hash.js";
import type { TxBody } from "../../ledger/tx.js";
import {
  type Book,
  type Fate,
  type GovProposal,
  type Grid,
  type HistoryPoint,
  type LatestReading,
  type Market,
  type MemberByKey,
  type MemberDetail,
  type OpenOrder,
  type Status,
  getJson,
  submitTx,
} from "./api.js";
import { powerChart } from "./chart.js";
import { byId, fill, h, notAvailable } from "./dom.js";
import { clock, energy, money, power, price, shortId } from "./format.js";
import { loadOrCreateSigner } from "./key.js";
import { BoxClock, cancelBody, nextOrderIntervalStartMs, orderBody, parseEnergyWh, parsePriceMicroPerKWh, resultText, sign, voteBody } from "./txs.js";

const REFRESH_MS = 3_000;
/** After a 429 (the box's per-client rate limit) the page polls this much more slowly, for a minute. */
const RATE_LIMITED_SLOWDOWN = 5;
/** Open proposals whose votes the page reads each refresh, to show "you voted". */
const PROPOSALS_SHOWN_MAX = 10;
const HISTORY_REFRESH_MS = 60_000;
const HISTORY_STEP_MS = 5 * 60_000;
const FATE_WAIT_MS = 30_000;
const FATE_POLL_MS = 500;

const signer = loadOrCreateSigner(localStorage);
const view = {
  status: null as Status | null,
  me: null as MemberByKey | null,
  enrolment: "unknown" as "unknown" | "enrolled" | "not-enrolled",
  market: null as Market | null,
  grid: null as Grid | null,
  clock: new BoxClock(), // the box's clock: orders are for the box's intervals
  lastSeqUsed: 0,
  history: null as { points: HistoryPoint[]; fetchedMs: number; member: number } | null,
  busy: false,
  slowUntilMs: 0,
};
const names = new Map<number, string | null>();

const METER_MEMBER_KEY = "peergrid.meterMember.v1";
const boxNowMs = () => view.clock.now(Date.now());

// ---- messages ----

function say(text: string, kind: "info" | "ok" | "error" = "info"): void {
  // An error interrupts (role alert); progress waits for a pause (the region's aria-live polite).
  fill(byId("messages"), h("p", { class: `msg ${kind}`, role: kind === "error" ? "alert" : undefined }, text));
}

// ---- signing and submitting ----

async function waitFate(idHex: string): Promise<Fate | null> {
  const until = Date.now() + FATE_WAIT_MS;
  while (Date.now() < until) {
    const r = await getJson<Fate>(`/api/v1/tx/${idHex}`);
    if (r.ok && (r.data.status === "committed" || r.data.status === "rejected")) return r.data;
    await new Promise((res) => setTimeout(res, FATE_POLL_MS));
  }
  return null;
}

/** Sign `body` with the browser's key, submit it, and wait for its block. Returns the tx id once committed ok. */
async function send(body: TxBody, what: string): Promise<string | null> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const me = view.me;
    if (me === null || !me.member.active) {
      say("This browser's key is not enrolled yet: see “Your key” below.", "error");
      return null;
    }
    const seq = Math.max(me.member.lastSeq, view.lastSeqUsed);
    const tx = sign(body, signer, me.member.index, seq, me.chainHash);
    const r = await submitTx(toHex(tx.bytes));
    if (!r.ok) {
      // Another device with this key, or a reload, used the number: read the ledger's and sign again.
      if (r.code === "PG_ERR_MEMPOOL_STALE_SEQUENCE" && attempt === 0) {
        await refreshMe();
        view.lastSeqUsed = 0;
        continue;
      }
      say(`${what} refused by the box: ${r.message} (${r.code})`, "error");
      return null;
    }
    view.lastSeqUsed = seq + 1;
    say(`${what} signed and sent; waiting for the next block…`);
    const id = toHex(tx.id);
    const fate = await waitFate(id);
    if (fate === null) say(`${what} sent, not in a block yet: it may still be. Check again in a moment.`, "error");
    else if (fate.status === "rejected") say(`${what} refused: ${fate.message ?? fate.code ?? "rejected"}`, "error");
    else if (fate.result !== "ok") say(`${what} refused by the ledger: ${resultText(fate.result ?? "?")}`, "error");
    else say(`${what} done (in block).`, "ok");
    return fate?.status === "committed" && fate.result === "ok" ? id : null;
  }
  return null;
}

async function withBusy(f: () => Promise<void>): Promise<void> {
  if (view.busy) return;
  view.busy = true;
  document.body.classList.add("busy");
  try {
    await f();
  } catch (err) {
    // Nothing a click starts may fail silently: the neighbour would wait for an order that was never sent.
    say(`Something went wrong, nothing was sent: ${err instanceof Error ? err.message : String(err)}`, "error");
  } finally {
    view.busy = false;
    document.body.classList.remove("busy");
    await refresh();
  }
}

async function placeOrder(form: HTMLFormElement): Promise<void> {
  const data = new FormData(form);
  const side = data.get("side") === "buy" ? "buy" : "sell";
  const market = view.market;
  if (market === null) return say("The market's rules have not loaded yet.", "error");
  let body: TxBody;
  const start = nextOrderIntervalStartMs(boxNowMs(), market.intervalMs, view.clock.rate);
  try {
    const energyWh = parseEnergyWh(String(data.get("energyWh") ?? ""));
    const priceMicroPerKWh = parsePriceMicroPerKWh(String(data.get("price") ?? ""));
    body = orderBody({ side, energyWh, priceMicroPerKWh }, start, market.intervalMs);
  } catch (err) {
    return say(`Not sent: ${(err as Error).message}.`, "error");
  }
  await send(body, `${side === "buy" ? "Buy" : "Sell"} order`);
}

async function cancelOrder(orderId: string): Promise<void> {
  await send(cancelBody(orderId), "Cancel");
}

async function vote(proposalId: string, approve: boolean): Promise<void> {
  await send(voteBody(proposalId, approve), approve ? "Vote yes" : "Vote no");
}

// ---- reading the box ----

async function refreshMe(): Promise<void> {
  const r = await getJson<MemberByKey>(`/api/v1/members/by-key/${signer.publicKeyHex}`);
  if (r.ok) {
    view.me = r.data;
    view.enrolment = "enrolled";
  } else if (r.status === 404) {
    view.me = null;
    view.enrolment = "not-enrolled";
  }
}

async function nameOf(member: number): Promise<string> {
  if (!names.has(member)) {
    names.set(member, null); // asked once: a box without the route is not asked again
    const r = await getJson<{ name?: string; member?: { name?: string } }>(`/api/v1/members/${member}`);
    if (r.ok) names.set(member, r.data.member?.name ?? r.data.name ?? null);
    else if (!r.missing) names.delete(member); // a passing failure: ask again next time
  }
  return names.get(member) ?? `member ${member}`;
}

let refreshing: Promise<void> | null = null;

async function refresh(): Promise<void> {
  refreshing ??= (async () => {
    const [st, , mk, gr] = await Promise.all([getJson<Status>("/api/v1/status"), refreshMe(), getJson<Market>("/api/v1/market"), getJson<Grid>("/api/v1/grid")]);
    if ([st, mk, gr].some((r) => !r.ok && r.status === 429)) view.slowUntilMs = Date.now() + 60_000;
    if (st.ok) {
      view.status = st.data;
      view.clock.observe(Date.now(), st.data.lastBlockTimeMs);
    }
    fill(byId("conn"), st.ok ? `${st.data.name} · block ${st.data.height}` : "box not answering");
    byId("conn").classList.toggle("down", !st.ok);
    if (mk.ok) view.market = mk.data;
    if (gr.ok) view.grid = gr.data;
    renderKey();
    await Promise.all([renderBanner(), renderNow(), renderMarket(), renderCommunity()]);
  })().finally(() => (refreshing = null));
  return refreshing;
}

// ---- sections ----

function renderKey(): void {
  fill(byId("public-key"), signer.publicKeyHex);
  const me = view.me;
  const box = byId("enrolment");
  byId("app").dataset.enrolment = view.enrolment;
  if (me !== null) {
    fill(
      box,
      h("p", { class: "ok" }, `Enrolled as member ${me.member.index} (“${me.member.name}”, ${me.member.roles.join(", ")})${me.member.active ? "" : " — removed: this key can no longer sign"}.`),
      h("p", { class: "muted" }, `This browser keeps your key for this address (${location.host}); another box's address gets a key of its own. Clearing the site's data deletes it: you would need a new key enrolled.`),
    );
    byId("member-no").textContent = String(me.member.index);
    return;
  }
  byId("member-no").textContent = "–";
  if (view.enrolment === "unknown") return fill(box, h("p", { class: "muted" }, "Checking with the box…"));
  fill(
    box,
    h("p", {}, "This key is not enrolled yet, so you can look but not trade or vote. To enrol it:"),
    h(
      "ol",
      {},
      h("li", {}, "Copy the key above and give it to your neighbourhood's admin (in person, or a message you trust)."),
      h("li", {}, "The admin enrols it, either with the command ", h("code", {}, `peergrid propose --enrol YOURNAME:user:${signer.publicKeyHex}`), " and the members' vote, or at once through a box's admin route (POST /api/v1/admin/members with this key, your name and the role user; it takes the box owner's admin token)."),
      h("li", {}, "Keep this page open: it notices the enrolment by itself within a few seconds."),
    ),
    h("p", { class: "muted small" }, `The key is kept by this browser for this address (${location.host}): use this address from now on, since another box's address makes another key.`),
  );
}

async function renderBanner(): Promise<void> {
  const g = view.grid;
  const banner = byId("island-banner");
  if (g === null || !g.islanded) {
    banner.hidden = true;
    return;
  }
  const powered = g.breakers.filter((b) => b.readback === "closed").map((b) => b.premise);
  const poweredNames = await Promise.all([...new Set(powered)].map(nameOf));
  const since = g.islandedSinceMs === null ? "" : ` since ${clock(g.islandedSinceMs)}`;
  fill(
    banner,
    h("strong", {}, "Grid outage: "),
    `the neighbourhood is islanded${since}; `,
    poweredNames.length > 0 ? `powered: ${poweredNames.join(", ")}.` : "the controller has not reported which premises are powered yet.",
    g.criticalLoads.length > 0 ? h("span", { class: "small" }, ` Critical loads first: ${(await Promise.all(g.criticalLoads.map(nameOf))).join(", ")}.`) : null,
  );
  banner.hidden = false;
}

async function renderNow(): Promise<void> {
  const m = view.market;
  const last = m?.lastCleared ?? null;
  fill(byId("price"), last === null ? "no clearing yet" : last.priceMicroPerKWh === null ? "no trade" : price(last.priceMicroPerKWh));
  fill(byId("price-when"), last === null ? "" : `interval from ${clock(last.startMs)}: ${energy(last.volumeWh)} traded`);
  const target = byId("my-power");
  const latest = await getJson<{ readings: LatestReading[] }>("/api/v1/readings");
  if (!latest.ok) return fill(target, latest.missing ? notAvailable("Meters", "GET /api/v1/readings") : h("p", { class: "muted" }, latest.message));
  // Whose meters: the ledger does not link a neighbour's browser key to the box that reads their meters
  // (each has its own member), so: the member chosen here (kept in this browser), else my own member's
  // meters if it has any, else the meters of the box that served this page (usually one's own box).
  const chosen = Number(localStorage.getItem(METER_MEMBER_KEY) ?? "NaN");
  const owner = Number.isInteger(chosen) ? chosen : view.me !== null && latest.data.readings.some((r) => r.member === view.me?.member.index) ? view.me.member.index : (view.status?.boxId ?? 0);
  byId<HTMLInputElement>("meter-member").placeholder = String(owner);
  fill(byId("meters-of"), `Meters of ${await nameOf(owner)}${owner === view.status?.boxId ? " (this box)" : ""}`);
  const mine = latest.data.readings.filter((r) => r.member === owner);
  if (mine.length === 0) return fill(target, h("p", { class: "muted" }, "No meter of this member reports to the ledger yet."));
  const totalW = mine.reduce((sum, r) => sum + r.powerW, 0);
  const dayStart = new Date(boxNowMs());
  dayStart.setHours(0, 0, 0, 0);
  const fromMs = dayStart.getTime();
  const first = mine[0] as LatestReading; // the chart shows one meter: the member's first
  if (view.history === null || view.history.member !== owner || Date.now() - view.history.fetchedMs > HISTORY_REFRESH_MS) {
    const r = await getJson<{ points: HistoryPoint[] }>(`/api/v1/readings/${owner}/${first.meterId}?from=${fromMs}&to=${boxNowMs() + 1}&stepMs=${HISTORY_STEP_MS}`);
    view.history = { points: r.ok ? r.data.points : [], fetchedMs: Date.now(), member: owner };
  }
  const pts = view.history.points;
  const p0 = pts[0];
  fill(
    target,
    h("p", { class: "big", id: "power-now" }, power(Math.abs(totalW)), h("span", { class: "unit" }, totalW >= 0 ? " importing" : " exporting")),
    h("p", { class: "muted small" }, `${mine.length} meter${mine.length === 1 ? "" : "s"}, last read ${clock(first.timeMs)}`),
    p0 === undefined ? null : h("p", { id: "energy-today" }, `Today: ${energy(first.importWh - p0.importWh)} in, ${energy(first.exportWh - p0.exportWh)} out`),
    powerChart(pts, fromMs, boxNowMs(), `Power today, meter ${first.meterId}: import above the line, export below`),
  );
}

function orderRow(o: OpenOrder, cancellable: boolean): HTMLElement {
  return h(
    "li",
    { class: `order ${o.side}`, "data-order-id": o.id },
    h("span", { class: "side" }, o.side),
    ` ${energy(o.energyWh)} at ${price(o.priceMicroPerKWh)} for ${clock(o.intervalStartMs)}`,
    cancellable ? h("button", { type: "button", class: "cancel", "data-cancel": o.id, "aria-label": `Cancel order ${shortId(o.id)}` }, "Cancel") : null,
  );
}

async function renderMarket(): Promise<void> {
  const m = view.market;
  const me = view.me;
  const start = m === null ? null : nextOrderIntervalStartMs(boxNowMs(), m.intervalMs, view.clock.rate);
  fill(byId("order-interval"), start === null ? "" : `for the interval ${clock(start)}–${clock(start + (m as Market).intervalMs)}`);
  byId<HTMLButtonElement>("place-order").disabled = me === null || view.busy;
  if (start !== null) {
    const book = await getJson<Book>(`/api/v1/market/book?interval=${start}`);
    if (!book.ok) fill(byId("book"), book.missing ? notAvailable("Order book", "GET /api/v1/market/book") : h("p", { class: "muted" }, book.message));
    else {
      const iv = book.data.intervals[0];
      const bids = iv?.bids ?? [];
      const asks = iv?.asks ?? [];
      fill(
        byId("book"),
        h("div", { class: "book-side" }, h("h4", {}, `Buy: ${bids.length} (${energy(iv?.bidWh ?? 0)})`), h("ul", {}, ...bids.map((o) => orderRow(o, false)))),
        h("div", { class: "book-side" }, h("h4", {}, `Sell: ${asks.length} (${energy(iv?.askWh ?? 0)})`), h("ul", {}, ...asks.map((o) => orderRow(o, false)))),
      );
    }
  }
  if (me === null) {
    fill(byId("my-orders"), h("p", { class: "muted" }, "Enrol to trade."));
    fill(byId("my-trades"));
    fill(byId("balance"), "–");
    return;
  }
  const n = me.member.index;
  const rec = await getJson<MemberDetail>(`/api/v1/members/${n}`);
  // Without the member route (or when it fails), my open orders from the whole book; trades and balance from the market.
  let orders: readonly OpenOrder[];
  let trades: MemberDetail["trades"];
  let balanceMicro: number;
  if (rec.ok) ({ orders, trades, balanceMicro } = rec.data);
  else {
    const all = await getJson<Book>("/api/v1/market/book");
    orders = all.ok ? all.data.intervals.flatMap((iv) => [...iv.bids, ...iv.asks]).filter((o) => o.author === n) : [];
    trades = (m?.lastCleared?.trades ?? [])
      .filter((t) => t.buyer === n || t.seller === n)
      .map((t) => ({ intervalStartMs: m?.lastCleared?.startMs ?? 0, side: t.buyer === n ? "buy" : "sell", counterparty: t.buyer === n ? t.seller : t.buyer, energyWh: t.energyWh, priceMicroPerKWh: t.buyer === n ? t.buyerPriceMicroPerKWh : t.sellerPriceMicroPerKWh, deliveredWh: t.deliveredWh }));
    balanceMicro = m?.balances.find((b) => b.account === String(n))?.balanceMicro ?? 0;
  }
  fill(byId("my-orders"), orders.length === 0 ? h("p", { class: "muted" }, "No open orders.") : h("ul", {}, ...orders.map((o) => orderRow(o, true))));
  fill(
    byId("my-trades"),
    trades.length === 0
      ? h("p", { class: "muted" }, rec.ok ? "No trades yet." : "No trades in the last clearing.")
      : h(
          "ul",
          {},
          ...trades
            .slice(0, 20)
            .map((t) => h("li", {}, `${clock(t.intervalStartMs)} ${t.side === "buy" ? "bought" : "sold"} ${energy(t.energyWh)} at ${price(t.priceMicroPerKWh)}${t.deliveredWh === null ? "" : `, ${energy(t.deliveredWh)} delivered`}`)),
        ),
  );
  fill(byId("balance"), `${money(balanceMicro)}${m?.settlementMode === "shadow" ? " (shadow market: nothing is owed)" : ""}`);
}

/** What a proposal would do, in words. */
async function proposalText(p: GovProposal): Promise<string> {
  const a = p.action;
  switch (a.kind) {
    case "criticalLoads":
      return `Critical-load list: ${(await Promise.all((a.premises ?? []).map(nameOf))).join(", ") || "none"}`;
    case "enrol":
      return `Enrol ${a.name ?? "a member"}`;
    case "remove":
      return `Remove ${await nameOf(a.subject ?? -1)}`;
    case "setRoles":
      return `Change the roles of ${await nameOf(a.subject ?? -1)}`;
    case "marketParams":
      return `Market rules: ${(a.changes ?? []).map((c) => `${c.param} = ${c.value}`).join(", ")}`;
    default:
      return a.kind;
  }
}

async function renderCommunity(): Promise<void> {
  const g = view.grid;
  if (g === null) return fill(byId("critical"), h("p", { class: "muted" }, "Loading…"));
  const crit = await Promise.all(g.criticalLoads.map(nameOf));
  fill(byId("critical"), crit.length === 0 ? h("p", { class: "muted" }, "No critical-load list voted yet: in an outage, premises are served by member number.") : h("ol", {}, ...crit.map((c) => h("li", {}, c))));
  const gov = await getJson<{ proposals: GovProposal[] }>("/api/v1/governance?status=open");
  // Without the governance route, the grid's list (no details of what each proposal does).
  const open: GovProposal[] = gov.ok ? gov.data.proposals : g.proposals.filter((p) => p.status === "open").map((p) => ({ ...p, action: { kind: p.kind }, electorate: 0 }));
  const shown = open.slice(0, PROPOSALS_SHOWN_MAX);
  const me = view.me;
  const myVotes = await Promise.all(
    shown.map(async (p) => {
      if (me === null) return undefined;
      const r = await getJson<{ votes: { member: number; approve: boolean }[] }>(`/api/v1/governance/proposals/${p.id}`);
      return r.ok ? r.data.votes.find((v) => v.member === me.member.index) : undefined;
    }),
  );
  const height = view.status?.height ?? 0;
  const items = await Promise.all(
    shown.map(async (p, i) => {
      const mine = myVotes[i];
      const what = await proposalText(p);
      return h(
        "li",
        { class: "proposal", "data-proposal": p.id },
        h("div", {}, h("strong", {}, what), ` — proposed by ${await nameOf(p.author)}`),
        h("div", { class: "muted small" }, `yes ${p.yes} · no ${p.no}${p.electorate > 0 ? ` of ${p.electorate} voters` : ""} · voting ends at block ${p.votingEndsHeight}${height > 0 ? ` (about ${Math.max(0, p.votingEndsHeight - height)} blocks left)` : ""}`),
        me === null
          ? h("div", { class: "muted small" }, "Enrol to vote.")
          : mine !== undefined
            ? h("div", { class: "small ok" }, `You voted ${mine.approve ? "yes" : "no"}.`)
            : h(
                "div",
                { class: "actions" },
                h("button", { type: "button", "data-vote": "yes", "data-id": p.id, "aria-label": `Vote yes: ${what}` }, "Yes"),
                h("button", { type: "button", "data-vote": "no", "data-id": p.id, class: "secondary", "aria-label": `Vote no: ${what}` }, "No"),
              ),
      );
    }),
  );
  fill(byId("proposals"), shown.length === 0 ? h("p", { class: "muted" }, "No open proposals.") : h("ul", {}, ...items));
}

// ---- wiring ----

/** The page's one Trusted Types policy (daemon/web.ts's CSP requires them): the service worker's URL, nothing else. */
interface TrustedTypesLike {
  createPolicy(name: string, rules: { createScriptURL(url: string): string }): { createScriptURL(url: string): unknown };
}

function serviceWorkerUrl(): unknown {
  const tt = (window as unknown as { trustedTypes?: TrustedTypesLike }).trustedTypes;
  if (tt === undefined) return "/sw.js"; // a browser without Trusted Types takes the plain string
  const policy = tt.createPolicy("peergrid", {
    createScriptURL: (url) => {
      if (url !== "/sw.js") throw new Error(`no script but /sw.js: ${url}`);
      return url;
    },
  });
  return policy.createScriptURL("/sw.js");
}

function wire(): void {
  byId<HTMLFormElement>("order-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void withBusy(() => placeOrder(ev.target as HTMLFormElement));
  });
  byId<HTMLFormElement>("meter-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = byId<HTMLInputElement>("meter-member").value.trim();
    if (v === "") localStorage.removeItem(METER_MEMBER_KEY);
    else localStorage.setItem(METER_MEMBER_KEY, String(Math.max(0, Math.floor(Number(v)))));
    view.history = null;
    void refresh();
  });
  document.addEventListener("click", (ev) => {
    const t = ev.target as HTMLElement;
    const cancel = t.closest<HTMLElement>("[data-cancel]");
    if (cancel !== null) void withBusy(() => cancelOrder(cancel.dataset.cancel as string));
    const v = t.closest<HTMLElement>("[data-vote]");
    if (v !== null) void withBusy(() => vote(v.dataset.id as string, v.dataset.vote === "yes"));
    if (t.id === "copy-key") {
      void navigator.clipboard?.writeText(signer.publicKeyHex).then(
        () => say("Key copied.", "ok"),
        () => say("Select the key and copy it by hand.", "error"),
      );
    }
  });
  // Live events when the box streams them (GET /api/v1/stream); polling otherwise.
  if ("EventSource" in window) {
    const es = new EventSource("/api/v1/stream?topics=clearing,island");
    // Not on every block or reading (each second): polling covers those; a clearing or an outage shows at once.
    for (const type of ["clearing", "island"]) es.addEventListener(type, () => void refresh());
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) es.close();
    };
  }
  let ticks = 0;
  setInterval(() => {
    ticks++;
    const slow = Date.now() < view.slowUntilMs;
    if (document.visibilityState === "visible" && !view.busy && (!slow || ticks % RATE_LIMITED_SLOWDOWN === 0)) void refresh();
  }, REFRESH_MS);
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register(serviceWorkerUrl() as string).then(
      () => (byId("app").dataset.sw = "registered"),
      (err: unknown) => (byId("app").dataset.sw = `failed: ${String(err)}`),
    );
  }
}

wire();
byId("app").dataset.keyCreated = String(signer.created);
void refresh().then(() => (byId("app").dataset.ready = "true"));
