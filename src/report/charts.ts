// Hand-built SVG charts of the result tables (grouped bars; several panels per file), readable in any
// browser. Pure string building: no DOM, no dependencies, no I/O.

export interface Series {
  name: string;
  /** One value per group; null draws nothing and prints "n/a". */
  values: (number | null)[];
}

export interface BarChart {
  title: string;
  yLabel: string;
  groups: string[];
  series: Series[];
  /** Axis range; defaults to [0, max rounded up]. */
  yMin?: number;
  yMax?: number;
  /** A dashed horizontal line, e.g. chance level 0.5 for AUROC. */
  refLine?: { value: number; label: string };
}

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

export function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function niceStep(range: number): number {
  const raw = range / 5;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

const fmt = (v: number): string => (Math.abs(v) >= 10 ? v.toFixed(1) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3));

/** One grouped bar chart as an SVG fragment of the returned size (no <svg> wrapper). */
function chartBody(c: BarChart): { body: string; width: number; height: number } {
  const barW = 16;
  const gap = 22;
  const left = 64;
  const top = 58;
  const plotH = 240;
  // rotated group labels need room below the axis and past the last group
  const longest = Math.max(4, ...c.groups.map((g) => g.length));
  const bottom = 36 + longest * 3.8;
  const groupW = Math.max(1, c.series.length) * barW + gap;
  const width = Math.max(560, left + c.groups.length * groupW + 20 + longest * 5.2);
  const height = top + plotH + bottom;
  const finite = c.series.flatMap((s) => s.values).filter((v): v is number => v !== null && Number.isFinite(v));
  const lo = c.yMin ?? Math.min(0, ...finite);
  let hi = c.yMax ?? Math.max(lo + 1e-9, ...finite, c.refLine?.value ?? -Infinity);
  const step = niceStep(hi - lo || 1);
  if (c.yMax === undefined) hi = Math.ceil(hi / step - 1e-9) * step;
  const y = (v: number): number => top + plotH - ((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo || 1)) * plotH;
  const out: string[] = [];
  out.push(`<text x="${width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(c.title)}</text>`);
  // legend
  let lx = left;
  c.series.forEach((s, i) => {
    out.push(`<rect x="${lx}" y="30" width="11" height="11" fill="${PALETTE[i % PALETTE.length]}"/>`);
    out.push(`<text x="${lx + 15}" y="40" font-size="11">${escapeXml(s.name)}</text>`);
    lx += 24 + s.name.length * 6.5;
  });
  // axis and grid
  for (let v = lo; v <= hi + step * 1e-6; v += step) {
    const yy = y(v).toFixed(1);
    out.push(`<line x1="${left}" x2="${width - 20}" y1="${yy}" y2="${yy}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${left - 6}" y="${yy}" dy="4" text-anchor="end" font-size="10">${escapeXml(fmt(v))}</text>`);
  }
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotH}" stroke="#333"/>`);
  out.push(`<line x1="${left}" x2="${width - 20}" y1="${top + plotH}" y2="${top + plotH}" stroke="#333"/>`);
  out.push(`<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" text-anchor="middle" font-size="11">${escapeXml(c.yLabel)}</text>`);
  // bars
  c.groups.forEach((g, gi) => {
    const gx = left + gap / 2 + gi * groupW;
    c.series.forEach((s, si) => {
      const v = s.values[gi];
      const x = gx + si * barW;
      if (v === null || !Number.isFinite(v)) {
        out.push(`<text x="${x + barW / 2}" y="${top + plotH - 4}" text-anchor="middle" font-size="8" fill="#999">n/a</text>`);
        return;
      }
      const y0 = y(Math.max(lo, 0));
      const y1 = y(v);
      out.push(
        `<rect x="${x}" y="${Math.min(y0, y1).toFixed(1)}" width="${barW - 2}" height="${Math.abs(y0 - y1).toFixed(1)}" fill="${PALETTE[si % PALETTE.length]}"><title>${escapeXml(`${s.name} / ${g}: ${v}`)}</title></rect>`,
      );
    });
    const cx = gx + (c.series.length * barW) / 2;
    out.push(`<text transform="translate(${cx} ${top + plotH + 12}) rotate(35)" font-size="10">${escapeXml(g)}</text>`);
  });
  if (c.refLine) {
    const yy = y(c.refLine.value).toFixed(1);
    out.push(`<line x1="${left}" x2="${width - 20}" y1="${yy}" y2="${yy}" stroke="#c00" stroke-dasharray="5 4"/>`);
    out.push(`<text x="${left + 4}" y="${yy}" dy="-3" font-size="10" fill="#c00">${escapeXml(c.refLine.label)}</text>`);
  }
  return { body: out.join("\n"), width, height };
}

/** An SVG document with the charts stacked vertically. */
export function renderSvg(charts: BarChart[]): string {
  const bodies = charts.map(chartBody);
  const width = Math.max(...bodies.map((b) => b.width));
  const height = bodies.reduce((h, b) => h + b.height, 0);
  let yOff = 0;
  const parts = bodies.map((b) => {
    const s = `<g transform="translate(0 ${yOff})">\n${b.body}\n</g>`;
    yOff += b.height;
    return s;
  });
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...parts,
    `</svg>`,
    "",
  ].join("\n");
}
