// Safe Markdown rendering for model answers and document snippets.
//
// Safety by construction: this renderer never parses HTML. It builds DOM nodes with
// document.createElement and fills them with textContent / Text nodes only, so any markup a
// model or a document produces (<script>, <img onerror=...>, <iframe>, ...) shows up as text.
// It creates no <img>, <iframe>, <object> or <style>, so nothing loads remote content, and links
// get an href only for http(s) and mailto URLs. The page's Content-Security-Policy is the second
// wall. Supported: paragraphs, headings, emphasis, strikethrough, inline code, fenced code
// blocks, ordered/unordered (nested) lists, block quotes, GFM tables, horizontal rules, links,
// bare URLs, and numbered citation markers like [1] when the answer carries citations.

const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Returns an absolute URL string when `raw` uses an allowed protocol, else null. */
export function safeUrl(raw) {
  try {
    const url = new URL(raw.trim(), window.location.href);
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function link(href, children) {
  const a = el("a");
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  a.referrerPolicy = "no-referrer";
  a.append(...children);
  return a;
}

// ---------------------------------------------------------------- inline

const PUNCT = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/;
const WORD = /[\p{L}\p{N}]/u;

/** Finds the index of the `]` that closes the `[` at `open`, honouring nesting and escapes. */
function closingBracket(text, open) {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === "\\") i++;
    else if (c === "[") depth++;
    else if (c === "]" && --depth === 0) return i;
  }
  return -1;
}

/** Parses `(url "title")` at `start`; returns {url, end} or null. */
function linkTarget(text, start) {
  if (text[start] !== "(") return null;
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (c === "\\") i++;
    else if (c === "(") depth++;
    else if (c === ")" && --depth === 0) {
      const inner = text.slice(start + 1, i).trim();
      const m = inner.match(/^<?([^\s>]*)>?(?:\s+["'(].*["')])?$/);
      return m ? { url: m[1], end: i + 1 } : null;
    }
    else if (c === "\n") return null;
  }
  return null;
}

/** Finds a closing emphasis delimiter `delim` after `from` that is not preceded by whitespace. */
function closingDelimiter(text, delim, from) {
  let i = from;
  while ((i = text.indexOf(delim, i)) !== -1) {
    const before = text[i - 1];
    const after = text[i + delim.length];
    const single = delim.length === 1;
    if (
      i > from &&
      before !== " " &&
      before !== "\n" &&
      !(single && (after === delim || before === delim)) &&
      !(delim[0] === "_" && after && WORD.test(after))
    ) {
      return i;
    }
    i += delim.length;
  }
  return -1;
}

/**
 * Parses inline Markdown into an array of DOM nodes.
 * @param {string} text
 * @param {{citations: Set<number>, inLink?: boolean}} ctx
 */
function parseInline(text, ctx) {
  const out = [];
  let buf = "";
  const flush = () => {
    if (buf) out.push(document.createTextNode(buf));
    buf = "";
  };
  const push = (node) => {
    flush();
    out.push(node);
  };

  for (let i = 0; i < text.length; ) {
    const c = text[i];
    const rest = text.slice(i);

    if (c === "\\" && i + 1 < text.length && PUNCT.test(text[i + 1])) {
      buf += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "\n") {
      push(el("br"));
      i += 1;
      continue;
    }
    if (c === "`") {
      const run = rest.match(/^`+/)[0];
      const close = text.indexOf(run, i + run.length);
      if (close !== -1) {
        let code = text.slice(i + run.length, close).replace(/\n/g, " ");
        if (/^ .* $/.test(code)) code = code.slice(1, -1);
        push(el("code", null, code));
        i = close + run.length;
        continue;
      }
      buf += run;
      i += run.length;
      continue;
    }
    if ((c === "[" || (c === "!" && text[i + 1] === "[")) && !ctx.inLink) {
      const open = c === "!" ? i + 1 : i;
      const close = closingBracket(text, open);
      if (close !== -1) {
        const label = text.slice(open + 1, close);
        const target = linkTarget(text, close + 1);
        if (target) {
          const href = safeUrl(target.url);
          // Images are never loaded: they become a link (or plain text) naming the image.
          const children =
            c === "!"
              ? [document.createTextNode(`[image: ${label || target.url}]`)]
              : parseInline(label, { ...ctx, inLink: true });
          if (href) push(link(href, children));
          else {
            flush();
            out.push(...children);
          }
          i = target.end;
          continue;
        }
        const cite = label.match(/^\s*(\d{1,3})\s*$/);
        if (c === "[" && cite && ctx.citations.has(Number(cite[1]))) {
          const n = Number(cite[1]);
          const button = el("button", "cite", String(n));
          button.type = "button";
          button.dataset.cite = String(n);
          button.setAttribute("aria-label", `Source ${n}`);
          push(button);
          i = close + 1;
          continue;
        }
      }
      buf += c;
      i += 1;
      continue;
    }
    if (c === "*" || c === "_" || c === "~") {
      const run = rest.match(c === "~" ? /^~~/ : /^(\*\*|__|\*|_)/);
      const prev = text[i - 1];
      // Intraword underscores (snake_case) are not emphasis.
      const intraword = c === "_" && prev && WORD.test(prev);
      if (run && !intraword && text[i + run[0].length] && !/\s/.test(text[i + run[0].length])) {
        const delim = run[0];
        const close = closingDelimiter(text, delim, i + delim.length);
        if (close !== -1) {
          const tag = c === "~" ? "del" : delim.length === 2 ? "strong" : "em";
          const node = el(tag);
          node.append(...parseInline(text.slice(i + delim.length, close), ctx));
          push(node);
          i = close + delim.length;
          continue;
        }
      }
      const literal = rest.match(c === "~" ? /^~+/ : c === "*" ? /^\*+/ : /^_+/)[0];
      buf += literal;
      i += literal.length;
      continue;
    }
    if ((c === "h" || c === "H") && !ctx.inLink && (!text[i - 1] || !WORD.test(text[i - 1]))) {
      const m = rest.match(/^https?:\/\/[^\s<>"'`]+/i);
      if (m) {
        const url = m[0].replace(/[.,;:!?)\]]+$/, "");
        const href = safeUrl(url);
        if (href) {
          push(link(href, [document.createTextNode(url)]));
          i += url.length;
          continue;
        }
      }
    }
    buf += c;
    i += 1;
  }
  flush();
  return out;
}

// ---------------------------------------------------------------- blocks

const FENCE = /^( {0,3})(`{3,}|~{3,})\s*([^\s`]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$/;
const HR = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}>/;
const LIST_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])(\s+|$)(.*)$/;
const TABLE_DELIM = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;
const BLANK = /^\s*$/;

function isTableStart(lines, i) {
  return lines[i].includes("|") && i + 1 < lines.length && TABLE_DELIM.test(lines[i + 1]) &&
    lines[i + 1].includes("-") && (lines[i + 1].includes("|") || lines[i].trim().startsWith("|"));
}

function startsBlock(lines, i) {
  const line = lines[i];
  return FENCE.test(line) || HEADING.test(line) || HR.test(line) || QUOTE.test(line) ||
    LIST_ITEM.test(line) || isTableStart(lines, i);
}

function splitRow(line) {
  let s = line.trim();
  if (s.startsWith("|")) s = s.slice(1);
  if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
  const cells = [];
  let cur = "";
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "\\" && s[i + 1] === "|") {
      cur += "|";
      i++;
    } else if (s[i] === "|") {
      cells.push(cur.trim());
      cur = "";
    } else cur += s[i];
  }
  cells.push(cur.trim());
  return cells;
}

function codeBlock(code, lang) {
  const wrap = el("div", "code-block");
  const head = el("div", "code-head");
  const safeLang = (lang || "").toLowerCase().replace(/[^a-z0-9+#-]/g, "").slice(0, 20);
  head.append(el("span", "code-lang", safeLang || "code"));
  const copy = el("button", "code-copy", "Copy code");
  copy.type = "button";
  copy.dataset.copyCode = "";
  head.append(copy);
  const pre = el("pre");
  const codeEl = el("code", safeLang ? `language-${safeLang}` : null, code);
  pre.append(codeEl);
  wrap.append(head, pre);
  return wrap;
}

function table(lines, i, ctx) {
  const header = splitRow(lines[i]);
  const aligns = splitRow(lines[i + 1]).map((d) =>
    d.startsWith(":") && d.endsWith(":") ? "center" : d.endsWith(":") ? "right" : d.startsWith(":") ? "left" : "",
  );
  const wrap = el("div", "table-wrap");
  const t = el("table");
  const thead = el("thead");
  const hr = el("tr");
  header.forEach((cell, k) => {
    const th = el("th", aligns[k] ? `align-${aligns[k]}` : null);
    th.scope = "col";
    th.append(...parseInline(cell, ctx));
    hr.append(th);
  });
  thead.append(hr);
  const tbody = el("tbody");
  let j = i + 2;
  while (j < lines.length && !BLANK.test(lines[j]) && lines[j].includes("|")) {
    const cells = splitRow(lines[j]);
    const tr = el("tr");
    for (let k = 0; k < header.length; k++) {
      const td = el("td", aligns[k] ? `align-${aligns[k]}` : null);
      td.append(...parseInline(cells[k] ?? "", ctx));
      tr.append(td);
    }
    tbody.append(tr);
    j++;
  }
  t.append(thead, tbody);
  wrap.append(t);
  return { node: wrap, next: j };
}

function list(lines, i, ctx) {
  const first = lines[i].match(LIST_ITEM);
  const baseIndent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const node = el(ordered ? "ol" : "ul");
  if (ordered) {
    const start = parseInt(first[2], 10);
    if (start !== 1) node.start = start;
  }
  let loose = false;
  const items = [];
  let j = i;
  while (j < lines.length) {
    const m = lines[j].match(LIST_ITEM);
    if (!m || m[1].length > baseIndent + 1 || /\d/.test(m[2]) !== ordered) break;
    const contentIndent = m[1].length + m[2].length + Math.min(Math.max(m[3].length, 1), 4);
    const body = [m[4]];
    j++;
    while (j < lines.length) {
      const line = lines[j];
      if (BLANK.test(line)) {
        // A blank line continues the item only when indented content follows.
        let k = j;
        while (k < lines.length && BLANK.test(lines[k])) k++;
        if (k < lines.length && lines[k].match(/^\s*/)[0].length > baseIndent) {
          loose = true;
          while (j < k) body.push(lines[j++]);
          continue;
        }
        if (k < lines.length && LIST_ITEM.test(lines[k])) {
          const mk = lines[k].match(LIST_ITEM);
          if (mk[1].length <= baseIndent + 1 && /\d/.test(mk[2]) === ordered) loose = true;
        }
        break;
      }
      const indent = line.match(/^\s*/)[0].length;
      if (indent > baseIndent + 1) {
        body.push(line.slice(Math.min(indent, contentIndent)));
        j++;
        continue;
      }
      if (LIST_ITEM.test(line) || startsBlock(lines, j)) break;
      body.push(line); // lazy paragraph continuation
      j++;
    }
    items.push(body);
    // Skip the blank lines between items of a loose list.
    let k = j;
    while (k < lines.length && BLANK.test(lines[k])) k++;
    if (k > j && k < lines.length) {
      const mk = lines[k].match(LIST_ITEM);
      if (mk && mk[1].length <= baseIndent + 1 && /\d/.test(mk[2]) === ordered) j = k;
    }
  }
  for (const body of items) {
    const li = el("li");
    const blocks = parseBlocks(body, ctx);
    for (const b of blocks) {
      if (!loose && b.tagName === "P") li.append(...b.childNodes);
      else li.append(b);
    }
    node.append(li);
  }
  return { node, next: j };
}

function parseBlocks(lines, ctx) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (BLANK.test(line)) {
      i++;
      continue;
    }
    let m = line.match(FENCE);
    if (m) {
      const indent = m[1].length;
      const fence = m[2];
      const closing = new RegExp(`^ {0,3}${fence[0] === "`" ? "`" : "~"}{${fence.length},}\\s*$`);
      const body = [];
      i++;
      while (i < lines.length && !closing.test(lines[i])) {
        body.push(lines[i].replace(new RegExp(`^ {0,${indent}}`), ""));
        i++;
      }
      i++; // the closing fence (or the end of an unfinished, still streaming block)
      out.push(codeBlock(body.join("\n"), m[3]));
      continue;
    }
    m = line.match(HEADING);
    if (m) {
      const h = el(`h${m[1].length}`);
      h.append(...parseInline(m[2] || "", ctx));
      out.push(h);
      i++;
      continue;
    }
    if (HR.test(line)) {
      out.push(el("hr"));
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && !BLANK.test(lines[i])) {
        body.push(lines[i].replace(/^ {0,3}> ?/, ""));
        i++;
      }
      const q = el("blockquote");
      q.append(...parseBlocks(body, ctx));
      out.push(q);
      continue;
    }
    if (isTableStart(lines, i)) {
      const { node, next } = table(lines, i, ctx);
      out.push(node);
      i = next;
      continue;
    }
    if (LIST_ITEM.test(line) && LIST_ITEM.exec(line)[4].trim() !== "") {
      const { node, next } = list(lines, i, ctx);
      out.push(node);
      i = next;
      continue;
    }
    const para = [line.trim()];
    i++;
    while (i < lines.length && !BLANK.test(lines[i]) && !startsBlock(lines, i)) {
      para.push(lines[i].trim());
      i++;
    }
    const p = el("p");
    p.append(...parseInline(para.join("\n"), ctx));
    out.push(p);
  }
  return out;
}

/**
 * Renders Markdown text into a DocumentFragment of safe nodes.
 * @param {string} source
 * @param {{citations?: Array<{index: number}>}} [options] citation indexes become buttons
 *   carrying `data-cite="<n>"` wherever the text says `[n]`.
 */
export function renderMarkdown(source, { citations = [] } = {}) {
  const ctx = { citations: new Set((citations || []).map((c) => Number(c.index))) };
  const lines = String(source ?? "").replace(/\r\n?/g, "\n").replace(/\t/g, "    ").split("\n");
  const frag = document.createDocumentFragment();
  frag.append(...parseBlocks(lines, ctx));
  return frag;
}
