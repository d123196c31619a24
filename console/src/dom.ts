// A few DOM helpers: the console renders plain elements, no framework.

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | boolean | number | ((ev: Event) => void) | undefined>;

export function h(tag: string, attrs: Attrs = {}, ...children: (Child | Child[])[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

/** A real table: caption, column headers (scope=col), row cells; the first cell of a row is its header.
 *  Below 600 px wide, CSS stacks each row into a card whose cells carry their column's name (data-label);
 *  the explicit roles keep it a table for assistive technology when display changes. */
export function table(caption: string, headers: string[], rows: (Child | Child[])[][], cls = ""): HTMLElement {
  return h("div", { class: "table-wrap" },
    h("table", { class: cls, role: "table" },
      h("caption", {}, caption),
      h("thead", { role: "rowgroup" }, h("tr", { role: "row" }, headers.map((x) => h("th", { scope: "col", role: "columnheader" }, x)))),
      h("tbody", { role: "rowgroup" }, rows.map((r) => h("tr", { role: "row" }, r.map((c, i) => (i === 0
        ? h("th", { scope: "row", role: "rowheader", "data-label": headers[i] }, c)
        : h("td", { role: "cell", "data-label": headers[i] }, c))))))));
}

export function replace(el: HTMLElement, ...children: Child[]): void {
  el.replaceChildren(...children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false));
}
