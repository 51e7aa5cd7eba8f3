// dhanfeed status page: facts from /api/status every few seconds, a candle chart from
// /api/candles. Read-only; text goes in with textContent only.
"use strict";

const STATUS_EVERY_MS = 2000;
const CANDLES_EVERY_MS = 15000; // today's chart grows while the collector runs
const COLORS = {
  up: "#26a69a", down: "#ef5350", dhan: "#5b6cf0", incomplete: "rgba(120, 120, 120, 0.45)",
  gap: "rgba(239, 83, 80, 0.18)", volume: "rgba(38, 166, 154, 0.45)",
};

const $ = (id) => document.getElementById(id);
const LWC = window.LightweightCharts;
const state = { timezone: "Asia/Kolkata", today: null };

function text(id, value) {
  $(id).textContent = value === null || value === undefined || value === "" ? "–" : String(value);
}

function when(iso) {
  if (!iso) return "never";
  return new Date(iso).toLocaleString("en-GB", { timeZone: state.timezone, dateStyle: "medium", timeStyle: "medium" }) + " IST";
}

function span(seconds) {
  const s = Math.abs(Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  const t = h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
  return seconds >= 0 ? `${t} left` : `expired ${t} ago`;
}

function age(seconds) {
  return seconds === null || seconds === undefined ? "no data yet" : `${seconds}s ago`;
}

async function getJson(url) {
  const resp = await fetch(url, { cache: "no-store" });
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

// -- facts ------------------------------------------------------------------------------------

function showStatus(s) {
  state.timezone = s.timezone;
  const badge = $("health");
  badge.textContent = s.health;
  badge.className = "badge " + s.health.split(" ")[0];
  text("checked-at", `checked ${when(s.checked_at)}${s.in_session ? ", in the session" : ", outside the session"}`);
  const list = $("findings");
  list.replaceChildren(...s.findings.map((f) => {
    const li = document.createElement("li");
    li.textContent = `${f.level}: ${f.message}`;
    if (f.level === "action needed") li.className = "act";
    return li;
  }));
  const t = s.token;
  text("token-fingerprint", t.present ? t.fingerprint : t.problem);
  text("token-expiry", t.present ? when(t.expires_at) : null);
  text("token-left", t.present ? span(t.remaining_s) + (t.refused ? ` — refused by Dhan (${t.refused_detail})` : "") : null);
  text("token-source", t.source);
  text("token-regenerate", t.can_regenerate ? "configured" : "not configured");
  const r = s.renewer;
  text("renewer-last", r.last_run ? `${when(r.last_run)} (exit ${r.last_exit_code})` : "never");
  text("renewer-next", r.next);
  const c = s.collector;
  text("collector-state", c.pid ? `${c.state} (pid ${c.pid})` : c.state);
  text("collector-rate", c.messages_per_s);
  text("collector-data", c.state === "running" ? age(c.last_data_age_s) : null);
  text("collector-counts", `${c.swaps} swaps, ${c.reconnects} reconnects, ${c.dropped} dropped, ${c.store_errors} store errors`);
  $("sockets").tBodies[0].replaceChildren(...c.sockets.map((k) => {
    const tr = document.createElement("tr");
    for (const v of [k.shard, k.role, k.state, k.instruments, age(k.last_data_age_s)]) {
      const td = document.createElement("td");
      td.textContent = String(v);
      tr.append(td);
    }
    return tr;
  }));
  const st = s.store;
  text("store-today", st.problem ? st.problem : `${st.candles_today} candles, ${st.gaps_today} gaps`);
  text("store-size", st.size_bytes === null ? null : `${(st.size_bytes / 1e6).toFixed(1)} MB`);
  const b = s.backfill;
  text("backfill-last", b.last_run ? `${when(b.last_run)} (exit ${b.last_exit_code})` +
    (b.unhealed_gaps === null ? "" : `, ${b.unhealed_gaps} gaps unhealed`) : "not run");
  text("backfill-reconciled", b.reconciled_day
    ? `${b.reconciled_day}: ${b.minutes_differing} of ${b.minutes_compared} minutes differ` : "not run");
}

async function refreshStatus() {
  try {
    showStatus(await getJson("/api/status"));
  } catch (err) {
    $("health").textContent = "unreachable";
    $("health").className = "badge action";
  }
}

// -- chart ------------------------------------------------------------------------------------

const chart = LWC.createChart($("chart"), {
  autoSize: true,
  layout: { attributionLogo: true },
  timeScale: { timeVisible: true, secondsVisible: false },
  rightPriceScale: { scaleMargins: { top: 0.08, bottom: 0.28 } },
});
const gapSeries = chart.addSeries(LWC.HistogramSeries, {
  priceScaleId: "gaps", color: COLORS.gap, lastValueVisible: false, priceLineVisible: false,
});
chart.priceScale("gaps").applyOptions({ scaleMargins: { top: 0, bottom: 0 }, visible: false });
const candleSeries = chart.addSeries(LWC.CandlestickSeries, {
  upColor: COLORS.up, downColor: COLORS.down, wickUpColor: COLORS.up, wickDownColor: COLORS.down,
  borderVisible: false,
});
const volumeSeries = chart.addSeries(LWC.HistogramSeries, {
  priceScaleId: "volume", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false,
});
chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.78, bottom: 0 } });
window.dhanfeed = { chart, candleSeries, volumeSeries, gapSeries, lastAnswer: null };

function barColor(c) {
  if (c.source === "dhan") return COLORS.dhan;
  if (!c.complete) return COLORS.incomplete;
  return null; // the series' up/down colours
}

function gapPoints(gaps, step, shift) {
  // One full-height histogram bar per interval a gap touches: a shaded span on the chart.
  const points = new Map();
  for (const g of gaps) {
    for (let t = Math.floor(g.start / step) * step; t < g.end && points.size < 20000; t += step) {
      points.set(t + shift, { time: t + shift, value: 1 });
    }
  }
  return [...points.values()].sort((a, b) => a.time - b.time);
}

function showCandles(a) {
  const shift = a.utc_offset_s; // the chart reads epoch seconds as UTC: show exchange time
  candleSeries.setData(a.candles.map((c) => {
    const bar = { time: c.time + shift, open: c.open, high: c.high, low: c.low, close: c.close };
    const color = barColor(c);
    return color ? { ...bar, color, wickColor: color, borderColor: color } : bar;
  }));
  volumeSeries.setData(a.candles.map((c) => ({
    time: c.time + shift, value: c.volume,
    color: c.source === "dhan" ? COLORS.dhan : c.close >= c.open ? COLORS.volume : "rgba(239, 83, 80, 0.45)",
  })));
  gapSeries.setData(gapPoints(a.gaps, a.interval_s, shift));
  chart.timeScale().fitContent();
  const dhan = a.candles.filter((c) => c.source === "dhan").length;
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  text("bar-count", `${plural(a.candles.length, "bar")}, ${dhan} from Dhan, ${plural(a.gaps.length, "gap")}`);
  window.dhanfeed.lastAnswer = a;
}

async function refreshCandles() {
  const q = new URLSearchParams({ instrument: $("instrument").value, interval: $("interval").value, date: $("date").value });
  try {
    showCandles(await getJson("/api/candles?" + q));
    $("chart-error").textContent = "";
    history.replaceState(null, "", "?" + q);
  } catch (err) {
    $("chart-error").textContent = err.message;
  }
}

function option(value, label) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = label;
  return o;
}

async function start() {
  const offer = await getJson("/api/instruments");
  state.timezone = offer.timezone;
  $("instrument").replaceChildren(...offer.instruments.map((i) => option(i.key, i.name ? `${i.name} (${i.key})` : i.key)));
  $("interval").replaceChildren(...offer.intervals.map((i) => option(i, i)));
  const today = new Date().toLocaleDateString("en-CA", { timeZone: offer.timezone });
  const wanted = new URLSearchParams(location.search);
  $("instrument").value = wanted.get("instrument") || offer.instruments[0]?.key || "";
  $("interval").value = wanted.get("interval") || offer.intervals[0] || "";
  $("date").value = wanted.get("date") || today;
  $("date").max = today;
  for (const id of ["instrument", "interval", "date"]) $(id).addEventListener("change", refreshCandles);
  await Promise.all([refreshStatus(), refreshCandles()]);
  document.body.dataset.ready = "1";
  setInterval(refreshStatus, STATUS_EVERY_MS);
  setInterval(() => { if ($("date").value === today) refreshCandles(); }, CANDLES_EVERY_MS);
}

start().catch((err) => { $("chart-error").textContent = err.message; });
