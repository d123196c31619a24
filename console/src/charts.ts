// Time-series charts with uPlot: one metric per chart, its unit on the axis.
import uPlot from "uplot";

export interface Line {
  label: string;
  values: (number | null)[];
  dash?: number[];
  color?: string;
}

const COLORS = ["#1b6ac9", "#c2410c", "#15803d", "#7c3aed", "#be123c"];

/** A chart of ``lines`` over ``times`` (ms since the epoch); ``fmt`` formats the y axis and the legend. */
export function lineChart(title: string, times: number[], lines: Line[], fmt: (x: number) => string): HTMLElement {
  const box = document.createElement("figure");
  box.className = "chart";
  const cap = document.createElement("figcaption");
  cap.textContent = title;
  box.append(cap);
  if (times.length === 0) {
    const empty = document.createElement("p");
    empty.className = "muted";
    empty.textContent = "no data in this window yet";
    box.append(empty);
    return box;
  }
  const width = Math.max(280, Math.min(560, (document.querySelector("main")?.clientWidth ?? 600) - 32));
  const opts: uPlot.Options = {
    width,
    height: 180,
    series: [
      {},
      ...lines.map((l, i) => ({
        label: l.label,
        stroke: l.color ?? COLORS[i % COLORS.length],
        width: 2,
        dash: l.dash,
        points: { show: times.length < 40 },
        value: (_u: uPlot, v: number | null) => (v === null ? "–" : fmt(v)),
      })),
    ],
    axes: [{}, { values: (_u: uPlot, ticks: number[]) => ticks.map(fmt), size: 70 }],
    scales: { x: { time: true } },
  };
  const data = [times.map((t) => t / 1000), ...lines.map((l) => l.values)] as uPlot.AlignedData;
  const holder = document.createElement("div");
  box.append(holder);
  new uPlot(opts, data, holder);
  box.setAttribute("role", "img");
  box.setAttribute("aria-label", `${title}: ${times.length} points`);
  return box;
}
