// A small SVG writer for the latency plots: one panel per subscriber count, offered rate (log x)
// against latency (log y), p50 solid and p99 dashed, one colour per system.

const COLORS = { edgeroom: "#1f6feb", partyserver: "#d9480f" };
const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function logTicks(lo, hi) {
  const ticks = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(v);
    }
  }
  return ticks;
}
const label = (v) => (v >= 1000 ? `${v / 1000}k` : v < 1 ? String(+v.toPrecision(2)) : String(v));

/**
 * @param {string} title
 * @param {{title: string, series: Record<string, {x:number,p50:number,p99:number}[]>, saturation: Record<string, number>}[]} panels
 */
export function latencyPlot(title, panels) {
  const W = 360;
  const H = 300;
  const m = { l: 56, r: 14, t: 34, b: 78 };
  const width = panels.length * W + 20;
  const height = H + 70;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`,
  ];
  panels.forEach((panel, i) => {
    const ox = 10 + i * W;
    const oy = 30;
    const pw = W - m.l - m.r;
    const ph = H - m.t - m.b + 40;
    const points = Object.values(panel.series).flat();
    const xs = points.map((p) => p.x).filter((v) => v > 0);
    const ys = points.flatMap((p) => [p.p50, p.p99]).filter((v) => Number.isFinite(v) && v > 0);
    parts.push(`<text x="${ox + m.l + pw / 2}" y="${oy + 16}" text-anchor="middle" font-size="12" font-weight="bold">${esc(panel.title)}</text>`);
    if (!xs.length || !ys.length) {
      parts.push(`<text x="${ox + m.l + pw / 2}" y="${oy + ph / 2}" text-anchor="middle">no open-loop data</text>`);
      return;
    }
    const x0 = Math.min(...xs) / 1.3;
    const x1 = Math.max(...xs) * 1.3;
    const y0 = Math.max(0.1, Math.min(...ys) / 1.5);
    const y1 = Math.max(...ys) * 1.5;
    const X = (v) => ox + m.l + ((Math.log10(v) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0))) * pw;
    const Y = (v) => oy + m.t + ph - ((Math.log10(v) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0))) * ph;
    parts.push(`<rect x="${ox + m.l}" y="${oy + m.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
    for (const t of logTicks(y0, y1)) {
      parts.push(`<line x1="${ox + m.l}" x2="${ox + m.l + pw}" y1="${Y(t)}" y2="${Y(t)}" stroke="#eee"/>`);
      parts.push(`<text x="${ox + m.l - 4}" y="${Y(t) + 4}" text-anchor="end">${label(t)}</text>`);
    }
    for (const t of [...new Set(xs)].sort((a, b) => a - b)) {
      parts.push(`<line y1="${oy + m.t}" y2="${oy + m.t + ph}" x1="${X(t)}" x2="${X(t)}" stroke="#eee"/>`);
      parts.push(`<text x="${X(t)}" y="${oy + m.t + ph + 14}" text-anchor="middle">${label(t)}</text>`);
    }
    parts.push(`<text x="${ox + m.l + pw / 2}" y="${oy + m.t + ph + 30}" text-anchor="middle">offered rate (messages/s, log)</text>`);
    parts.push(`<text transform="translate(${ox + 14},${oy + m.t + ph / 2}) rotate(-90)" text-anchor="middle">latency ms (log)</text>`);
    for (const [sys, pts] of Object.entries(panel.series)) {
      const sorted = [...pts].sort((a, b) => a.x - b.x);
      for (const [q, dash] of [["p50", ""], ["p99", "5,4"]]) {
        const valid = sorted.filter((p) => Number.isFinite(p[q]) && p[q] > 0);
        if (!valid.length) continue;
        const d = valid.map((p, j) => `${j ? "L" : "M"}${X(p.x).toFixed(1)},${Y(p[q]).toFixed(1)}`).join(" ");
        parts.push(`<path d="${d}" fill="none" stroke="${COLORS[sys]}" stroke-width="2" ${dash ? `stroke-dasharray="${dash}"` : ""}/>`);
        for (const p of valid) parts.push(`<circle cx="${X(p.x).toFixed(1)}" cy="${Y(p[q]).toFixed(1)}" r="2.5" fill="${COLORS[sys]}"/>`);
      }
    }
    const sat = Object.entries(panel.saturation)
      .map(([sys, v]) => `${sys} ${Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "–"}`)
      .join(" · ");
    parts.push(`<text x="${ox + m.l + pw / 2}" y="${oy + m.t + ph + 46}" text-anchor="middle" fill="#333">saturation (events/s): ${esc(sat)}</text>`);
  });
  // Legend.
  const ly = height - 12;
  let lx = 20;
  for (const sys of Object.keys(COLORS)) {
    for (const [q, dash] of [["p50", ""], ["p99", "5,4"]]) {
      parts.push(`<line x1="${lx}" x2="${lx + 26}" y1="${ly - 4}" y2="${ly - 4}" stroke="${COLORS[sys]}" stroke-width="2" ${dash ? `stroke-dasharray="${dash}"` : ""}/>`);
      parts.push(`<text x="${lx + 30}" y="${ly}">${sys} ${q}</text>`);
      lx += 130;
    }
  }
  parts.push("</svg>");
  return parts.join("\n");
}
