// Where a finance answer came from: the core's structured result (`labs.finance` on the chunks),
// shown as it was reported: intent, filters, matching rows, breakdown, reference date.

import { fmtInt, h } from "./dom.js";

const money = (value, currency) => {
  if (!Number.isFinite(value)) return "–";
  const text = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(value);
  return currency ? `${text} ${currency}` : text;
};

function table(headers, rows, numeric = []) {
  const head = h("tr", {}, headers.map((name, i) => h(numeric.includes(i) ? "th.num" : "th", { text: name })));
  const body = rows.map((cells) => h("tr", {}, cells.map((cell, i) => h(numeric.includes(i) ? "td.num" : "td", { text: cell }))));
  return h("div.table-wrap", {}, h("table.data", {}, h("thead", {}, head), h("tbody", {}, body)));
}

export function financeCard(labs) {
  const card = h("div.finance-card");
  card.append(h("h3", { text: "Answered from the finance data, not by the model" }));
  const f = labs.finance;
  if (!f) {
    card.append(h("p.muted", { text: "The finance module answered; the core sent no details." }));
    return card;
  }
  const list = h("dl");
  const row = (name, ...value) => list.append(h("dt", { text: name }), h("dd", {}, ...value));
  if (f.value !== null && f.value !== undefined) row("Figure", money(f.value, f.currency));
  row("Question type", f.intent || "–");
  const filters = Object.entries(f.filters || {});
  row("Filters", filters.length ? filters.map(([k, v]) => h("span.chip", { text: `${k} = ${v}` })) : "none (all rows)");
  row("Rows matched", fmtInt(f.row_count));
  if (f.reference_date) row("Reference date", f.reference_date);
  if (!f.understood) row("Understood", "no: the question did not match a known pattern");
  card.append(list);
  if (f.breakdown?.length) {
    card.append(h("details", {}, h("summary", { text: `Breakdown (${f.breakdown.length})` }),
      table(["Key", "Value", "Rows"], f.breakdown.map((b) => [b.key, money(b.value, f.currency), fmtInt(b.count)]), [1, 2])));
  }
  if (f.rows?.length) {
    card.append(h("details", {}, h("summary", { text: `Rows (${f.rows.length} of ${fmtInt(f.row_count)})` }),
      table(["Date", "Description", "Merchant", "Category", "Amount", "Account"],
        f.rows.map((t) => [t.date, t.description, t.merchant, t.category, money(t.amount, t.currency), t.account]), [4])));
  }
  return card;
}
