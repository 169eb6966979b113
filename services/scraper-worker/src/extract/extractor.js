// Quiz extractor: runs inside the page through WebDriver `execute` and returns
// {title, questions: [{text, kind, options, correct?}], stats: {nodes, text_chars}}
// or {error: "too_many_nodes" | "text_too_long", ...}.
// arguments[0] = {max_nodes, max_text_chars}.
const LIMITS = arguments[0] || {};
const MAX_NODES = LIMITS.max_nodes || 200000;
const MAX_TEXT = LIMITS.max_text_chars || 5000000;

// ---------- composed-tree walk (open shadow roots, same-origin iframes) ----------
const order = new Map(); // element -> document-order index over the composed tree
const all = [];
let textChars = 0;
function walk(root) {
  const stack = [root];
  while (stack.length) {
    const node = stack.pop();
    if (node.nodeType === 1) {
      order.set(node, all.length);
      all.push(node);
      if (all.length > MAX_NODES) return false;
      const tag = node.tagName;
      if (tag === 'IFRAME' || tag === 'FRAME') {
        let doc = null;
        try { doc = node.contentDocument; } catch (e) { doc = null; }
        if (doc && doc.documentElement) stack.push(doc.documentElement);
      }
    } else if (node.nodeType === 3) {
      textChars += node.data.length;
      continue;
    }
    const kids = [];
    if (node.shadowRoot) kids.push(...node.shadowRoot.childNodes);
    if (node.childNodes) kids.push(...node.childNodes);
    for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]);
  }
  return true;
}
if (!walk(document.documentElement)) return {error: 'too_many_nodes', count: all.length, limit: MAX_NODES};
if (textChars > MAX_TEXT) return {error: 'text_too_long', count: textChars, limit: MAX_TEXT};

// Parent in the composed tree: crosses shadow roots to their host and iframe documents to the frame.
function up(node) {
  if (!node) return null;
  const p = node.parentNode;
  if (!p) return null;
  if (p.nodeType === 11 && p.host) return p.host;
  if (p.nodeType === 9) {
    try { return p.defaultView && p.defaultView.frameElement ? p.defaultView.frameElement : null; } catch (e) { return null; }
  }
  return p;
}
function ancestors(el) { const out = []; let n = up(el); while (n && n.nodeType === 1) { out.push(n); n = up(n); } return out; }
function contains(a, b) { let n = b; while (n) { if (n === a) return true; n = up(n); } return false; }
function lca(els) {
  if (!els.length) return null;
  const chain = [els[0], ...ancestors(els[0])];
  for (const cand of chain) if (els.every(e => contains(cand, e))) return cand;
  return null;
}
function byId(el, id) {
  const root = el.getRootNode ? el.getRootNode() : document;
  return (root.getElementById ? root.getElementById(id) : null) || (root.querySelector ? root.querySelector('[id="' + CSS.escape(id) + '"]') : null);
}

// ---------- style and visibility ----------
const styleCache = new Map();
function style(el) {
  let s = styleCache.get(el);
  if (!s) { try { s = el.ownerDocument.defaultView.getComputedStyle(el); } catch (e) { s = null; } styleCache.set(el, s); }
  return s;
}
// Hidden by its own style (not by an ancestor): display:none, [hidden], visibility:hidden.
function selfHidden(el) {
  if (el.hidden || el.getAttribute('aria-hidden') === 'true') return true;
  const s = style(el);
  return !!s && (s.display === 'none' || s.visibility === 'hidden');
}
// Visually hidden but read to screen readers: the sr-only clip pattern.
function srOnly(el) {
  const s = style(el);
  if (!s || s.position !== 'absolute') return false;
  const tiny = parseFloat(s.width) <= 1 || parseFloat(s.height) <= 1;
  const clipped = (s.clip && s.clip !== 'auto') || (s.clipPath && s.clipPath !== 'none');
  return tiny && clipped;
}
function hiddenWithin(el, scope) {
  for (let n = el; n && n !== scope && n.nodeType === 1; n = up(n)) if (selfHidden(n) || srOnly(n)) return true;
  return false;
}
const SKIP_TAGS = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'SVG', 'INPUT', 'SELECT', 'TEXTAREA', 'BUTTON', 'IFRAME', 'OBJECT', 'META', 'LINK', 'HEAD']);
const INLINE = new Set(['inline', 'inline-block', 'contents', 'inline-flex', 'inline-grid']);
function isInline(el) { const s = style(el); return s ? INLINE.has(s.display) : false; }

// Visible text of a subtree, skipping parts hidden by their own style (an ancestor's hiding is ignored,
// so one-question-at-a-time paging still yields its text). `skip` elements are left out entirely.
function textOf(el, skip) {
  const parts = [];
  const rec = (node) => {
    if (node.nodeType === 3) { parts.push(node.data); return; }
    if (node.nodeType !== 1) return;
    if (skip && skip.has(node)) return;
    if (SKIP_TAGS.has(node.tagName) && node !== el) return;
    if (node !== el && (selfHidden(node) || srOnly(node))) return;
    if (node.tagName === 'IMG') { const alt = node.getAttribute('alt'); if (alt && !isMarkImage(node)) parts.push(' ' + alt + ' '); return; }
    if (node.tagName === 'BR') { parts.push(' '); return; }
    const block = node !== el && !isInline(node);
    if (block) parts.push(' ');
    if (node.shadowRoot) node.shadowRoot.childNodes.forEach(rec);
    node.childNodes.forEach(rec);
    if (block) parts.push(' ');
  };
  rec(el);
  return collapse(parts.join(''));
}
function collapse(s) { return (s || '').replace(/[\s\u00a0\u200b]+/g, ' ').trim(); }

// ---------- vocabularies ----------
const MARK_RE = /[\u2713\u2714\u2715\u2716\u2717\u2718\u274c\u274e\u2705]/g; // ✓✔✕✖✗✘❌❎✅
const TICK_RE = /[\u2713\u2714\u2705]/;
const CROSS_RE = /[\u2715\u2716\u2717\u2718\u274c\u274e]/;
function isMarkImage(img) {
  const s = ((img.getAttribute('alt') || '') + ' ' + (img.getAttribute('src') || '').split('/').pop() + ' ' + (img.className || '')).toLowerCase();
  return /\b(tick|check|checkmark|correct|right|incorrect|wrong|cross|grade)/.test(s) && collapse(img.getAttribute('alt') || '').length <= 20;
}
function tokens(el) {
  if (!el || el.nodeType !== 1) return [];
  const raw = [(typeof el.className === 'string' ? el.className : (el.getAttribute('class') || '')), el.id || ''].join(' ');
  return raw.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase().split(/[^a-z0-9]+/).filter(Boolean);
}
const CHROME_TOKENS = new Set(['nav', 'navbar', 'navigation', 'menu', 'menubar', 'footer', 'cookie', 'cookies', 'consent', 'gdpr',
  'newsletter', 'subscribe', 'signup', 'login', 'signin', 'register', 'registration', 'search', 'filter', 'filters', 'sort', 'sorting',
  'language', 'languages', 'lang', 'locale', 'rating', 'ratings', 'rate', 'stars', 'star', 'poll', 'polls', 'survey', 'nps', 'likert',
  'sidebar', 'breadcrumb', 'breadcrumbs', 'pagination', 'pager', 'toolbar', 'share', 'social', 'questionflag', 'flag', 'vote', 'voting',
  'satisfaction', 'feedback', 'comments', 'comment', 'settings', 'preferences', 'drawer', 'qn']);
const CHROME_ROLES = new Set(['navigation', 'banner', 'contentinfo', 'search', 'complementary', 'menu', 'menubar', 'toolbar', 'tablist', 'dialog', 'alertdialog']);
const CHROME_TAGS = new Set(['NAV', 'FOOTER', 'ASIDE']);
function isChromeEl(el) {
  if (CHROME_TAGS.has(el.tagName)) return true;
  if (el.tagName === 'HEADER' && !ancestors(el).some(a => a.tagName === 'MAIN' || a.tagName === 'ARTICLE' || a.tagName === 'SECTION')) return true;
  const role = (el.getAttribute('role') || '').toLowerCase();
  if (CHROME_ROLES.has(role)) {
    // A modal that itself holds a quiz is not chrome; a consent dialog is.
    if (role !== 'dialog' && role !== 'alertdialog') return true;
    const label = ((el.getAttribute('aria-label') || '') + ' ' + tokens(el).join(' ')).toLowerCase();
    if (/cookie|consent|privacy|newsletter|subscribe|login|sign/.test(label)) return true;
  }
  if (tokens(el).some(t => CHROME_TOKENS.has(t))) return true;
  return false;
}
function inChrome(el) { return [el, ...ancestors(el)].some(isChromeEl); }

const TF_PAIRS = [
  ['true', 'false'], ['wahr', 'falsch'], ['richtig', 'falsch'], ['vrai', 'faux'], ['verdadero', 'falso'], ['verdadeiro', 'falso'],
  ['vero', 'falso'], ['waar', 'onwaar'], ['juist', 'onjuist'], ['prawda', 'fałsz'], ['pravda', 'nepravda'], ['sant', 'falskt'],
  ['sandt', 'falsk'], ['sant', 'usant'], ['totta', 'tarua'], ['doğru', 'yanlış'], ['правда', 'ложь'], ['верно', 'неверно'],
  ['истина', 'ложь'], ['正しい', '誤り'], ['正しい', '正しくない'], ['正', '誤'], ['○', '×'], ['〇', '×'], ['正确', '错误'], ['對', '錯'],
  ['对', '错'], ['是', '否'], ['참', '거짓'], ['맞음', '틀림'], ['صح', 'خطأ'], ['صحيح', 'خطأ'], ['נכון', 'לא נכון'], ['सही', 'गलत'],
  ['benar', 'salah'], ['đúng', 'sai'], ['igaz', 'hamis'], ['adevărat', 'fals'], ['αληθής', 'ψευδής'], ['σωστό', 'λάθος'], ['t', 'f'],
];
function isTrueFalse(opts) {
  if (opts.length !== 2) return false;
  const a = opts[0].toLowerCase().replace(/[.!]$/, ''), b = opts[1].toLowerCase().replace(/[.!]$/, '');
  return TF_PAIRS.some(([t, f]) => (a === t && b === f) || (a === f && b === t));
}

// Question numbering: "1.", "Q2:", "Question 3", "Question 3 of 10", "Frage 4", "問1", "第2問", "#5".
const NUM_WORDS = 'question|frage|pregunta|questão|questao|domanda|vraag|вопрос|السؤال|سؤال|kysymys|fråga|spørsmål|pytanie|otázka|soru|câu|item|problem|aufgabe|exercise|exercice';
const Q_PREFIX = new RegExp('^\\s*(?:(?:' + NUM_WORDS + ')\\s*(?:no\\.?|nr\\.?|#)?\\s*\\d+\\s*(?:(?:of|von|de|di|van|из|من|/)\\s*\\d+)?\\s*[.:)\\-–—·]?' +
  '|問\\s*\\d+\\s*[.:)．：]?|第\\s*\\d+\\s*問\\s*[.:)．：]?|q\\s*\\d+\\s*[.:)\\-–—]?|\\(?\\d+\\s*[.:)\\]．]|#\\s*\\d+\\s*[.:)]?)\\s*', 'i');
function stripNumbering(s) {
  for (let i = 0; i < 2; i++) { const t = s.replace(Q_PREFIX, '').trim(); if (t === s || !t) break; s = t; }
  return s;
}
const POINTS_RE = /^[\s·•|,\-–—()]*(?:\d+(?:[.,]\d+)?\s*(?:\/\s*\d+(?:[.,]\d+)?\s*)?(?:pts?|points?|punkte?|pkt\.?|marks?|mark|puntos?|points|点|분|балл\w*)\.?|marked out of [\d.]+|out of [\d.]+|not yet answered|answer saved|not answered|unanswered|answered|incomplete|complete|required|flag(?:ged)? question|\d+\s*\/\s*\d+)[\s·•|,()]*$/i;
function isMeta(text) {
  if (!text) return true;
  let t = stripNumbering(text).replace(/^[\s·•|,:\-–—]+/, '').trim();
  if (!t) return true;
  if (/^(?:question|frage|pregunta|questão|domanda|vraag|вопрос|item|problem|aufgabe)$/i.test(t)) return true;
  // "1 point · Required", "Frage 1 von 4 · 1 Punkt": every piece is meta.
  const pieces = t.split(/\s*[·•|]\s*/).filter(Boolean);
  if (pieces.every(p => POINTS_RE.test(p) || /^(?:question|frage)\s*\d+/i.test(p))) return true;
  if (/^(?:score|punktzahl|result|ergebnis|time|zeit|timer|attempt|versuch)\s*[:：]/i.test(t)) return true;
  if (/^\d{1,2}:\d{2}(?::\d{2})?$/.test(t)) return true;
  // An answer-key line ("1. B 2. A, C"): only numbers and single letters.
  if (text.split(/[\s.,;:)\-–]+/).filter(Boolean).every(w => /^\d{1,3}$|^[A-Za-z]$/.test(w)) && /\d/.test(text) && /[A-Za-z]/.test(text)) return true;
  return false;
}
const INSTRUCTION_RE = new RegExp('^(?:please\\s+)?(?:' + [
  '(?:select|choose|pick|mark|tick|check)\\s+(?:one|all that apply|one or more|only one|exactly one|two|three|\\d+|all (?:the )?correct (?:answers?|options?)|(?:the|one|an|your)\\s+(?:(?:correct|best|right|most appropriate)\\s+)?(?:answer|option|response|choice)s?)(?:\\s+(?:answers?|options?|choices?))?(?:\\s+(?:below|from the list|that apply|only))?',
  'wählen sie .{0,40}', 'bitte wählen.{0,30}', 'kreuzen sie .{0,40}', 'mehrfachauswahl.{0,20}', 'einfachauswahl.{0,20}',
  'choisissez .{0,40}', 'sélectionnez .{0,40}', 'cochez .{0,40}', 'une (?:seule )?réponse.{0,20}',
  'seleccione .{0,40}', 'elija .{0,40}', 'selecciona .{0,40}', 'escolha .{0,40}', 'selecione .{0,40}', 'scegli .{0,40}', 'seleziona .{0,40}',
  'kies .{0,40}', 'selecteer .{0,40}', 'выберите .{0,40}', '(?:一つ|ひとつ|すべて|全て)?選択してください.{0,10}', '(?:一つ|1つ)選んでください.{0,10}',
  'multiple (?:choice|answers?)', 'single (?:choice|answer)', 'one answer', 'one or more answers?', 'true or false\\??', 'your answer',
].join('|') + ')[.:：!]?\\s*$', 'i');
function isInstruction(text) { return text.length <= 80 && INSTRUCTION_RE.test(text.trim()); }

function cleanStem(s) {
  s = collapse(s).replace(MARK_RE, '').trim();
  s = s.replace(/\s*\*+\s*$/, '').replace(/\s*\((?:required|pflicht)\)\s*$/i, '').trim();
  return stripNumbering(s);
}

// Option labels: "A.", "b)", "(c)", "D:", "ア", "①" — stripped only when the options carry a consistent sequence.
const SEQUENCES = [
  'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz', 'アイウエオカキクケコサシスセソ', 'あいうえおかきくけこ',
  'イロハニホヘトチリヌ', 'いろはにほへとちりぬ', '①②③④⑤⑥⑦⑧⑨⑩', 'αβγδεζηθ', 'АБВГДЕЖЗ', 'абвгдежз', '㋐㋑㋒㋓㋔',
];
const ROMAN = ['i', 'ii', 'iii', 'iv', 'v', 'vi', 'vii', 'viii', 'ix', 'x'];
function labelAt(text) {
  // Returns {label, rest} for a leading option label, or null.
  let m = text.match(/^\(\s*([A-Za-z]|\d{1,2}|[ivx]{1,4})\s*\)\s*(.+)$/i) ||
    text.match(/^([A-Za-z]|\d{1,2}|[ivxIVX]{1,4})\s*[.):\]．）]\s*(.+)$/) ||
    text.match(/^([A-Za-z])\s+[-–—]\s+(.+)$/) ||
    text.match(/^([\u30a0-\u30ff\u3040-\u309f\u2460-\u2469\u32d0-\u32fe\u0391-\u03c9\u0410-\u044f])\s*[.):．）、:：]?\s*(.+)$/);
  return m ? {label: m[1], rest: m[2]} : null;
}
function isSequence(labels) {
  if (labels.some(l => l == null)) return false;
  const ls = labels.map(l => l.toLowerCase());
  if (ls.every((l, i) => l === String(i + 1))) return true;
  if (ls.every((l, i) => l === ROMAN[i])) return true;
  return SEQUENCES.some(seq => labels.every((l, i) => seq[i] === l));
}
function stripLabels(opts) {
  if (opts.length < 2) return opts;
  const parsed = opts.map(labelAt);
  if (parsed.every(Boolean) && isSequence(parsed.map(p => p.label))) return parsed.map(p => p.rest.trim());
  return opts;
}

// ---------- controls and candidate groups ----------
const CHOICE_ROLES = new Set(['radio', 'checkbox', 'menuitemradio', 'menuitemcheckbox', 'option', 'switch']);
function controlType(el) {
  if (el.tagName === 'INPUT') {
    const t = (el.getAttribute('type') || '').toLowerCase();
    return t === 'radio' || t === 'checkbox' ? t : null;
  }
  const role = (el.getAttribute('role') || '').toLowerCase();
  if (role === 'radio' || role === 'menuitemradio') return 'radio';
  if (role === 'checkbox' || role === 'menuitemcheckbox') return 'checkbox';
  if (role === 'option') return el.closest && el.closest('select') ? null : 'option';
  return null;
}
function isFormControl(el) {
  if (el.tagName === 'INPUT') return (el.getAttribute('type') || 'text').toLowerCase() !== 'hidden';
  if (el.tagName === 'SELECT' || el.tagName === 'TEXTAREA') return true;
  const role = (el.getAttribute('role') || '').toLowerCase();
  return CHOICE_ROLES.has(role) || role === 'textbox' || role === 'combobox' || role === 'listbox' || el.isContentEditable === true && el.getAttribute('contenteditable') !== null;
}
const controls = all.filter(isFormControl);

// Text naming one option element.
function optionLabel(opt, rowEl) {
  const parts = [];
  const lb = opt.getAttribute('aria-labelledby');
  if (lb) for (const id of lb.split(/\s+/)) { const t = byId(opt, id); if (t) parts.push(textOf(t)); }
  if (!collapse(parts.join(' ')) && opt.labels && opt.labels.length) for (const l of opt.labels) parts.push(textOf(l));
  if (!collapse(parts.join(' ')) && opt.id && opt.tagName !== 'INPUT') {
    const root = opt.getRootNode();
    const l = root.querySelector ? root.querySelector('label[for="' + CSS.escape(opt.id) + '"]') : null;
    if (l) parts.push(textOf(l));
  }
  if (!collapse(parts.join(' ')) && opt.tagName !== 'INPUT') parts.push(textOf(opt));
  if (!collapse(parts.join(' ')) && rowEl && rowEl !== opt) parts.push(textOf(rowEl));
  if (!collapse(parts.join(' '))) parts.push(opt.getAttribute('aria-label') || opt.getAttribute('title') || '');
  if (!collapse(parts.join(' '))) { const img = (rowEl || opt).querySelector && (rowEl || opt).querySelector('img[alt]'); if (img) parts.push(img.getAttribute('alt')); }
  return collapse(parts.join(' ').replace(MARK_RE, ' '));
}

// The largest ancestor of `opt` that holds no other option of its group: the option's row.
function rowOf(opt, others) {
  let row = opt;
  for (let n = up(opt); n && n.nodeType === 1; n = up(n)) {
    if (others.some(o => o !== opt && contains(n, o))) break;
    row = n;
  }
  return row;
}

const groups = [];
const claimed = new Set();
function addGroup(kind, opts, source, extra) {
  opts = opts.filter(o => !claimed.has(o));
  if (opts.length < 2) return;
  opts.sort((a, b) => order.get(a) - order.get(b));
  groups.push(Object.assign({kind, opts, source}, extra || {}));
  opts.forEach(o => claimed.add(o));
}

// 1. Native radio/checkbox inputs: by shared name within a root and form; unnamed or uniquely named
//    ones cluster under their closest ancestor that holds another such input.
{
  const inputs = controls.filter(c => c.tagName === 'INPUT' && controlType(c));
  const byName = new Map();
  for (const inp of inputs) {
    const name = inp.getAttribute('name');
    if (!name) continue;
    const key = [controlType(inp), name];
    const root = inp.getRootNode();
    const form = inp.form || null;
    let bucket = null;
    for (const [k, v] of byName) if (k.key[0] === key[0] && k.key[1] === key[1] && k.root === root && k.form === form) bucket = v;
    if (!bucket) { bucket = []; byName.set({key, root, form}, bucket); }
    bucket.push(inp);
  }
  const lone = [];
  for (const [k, v] of byName) {
    if (v.length >= 2) addGroup(k.key[0], v, 'input');
    else lone.push(...v);
  }
  lone.push(...inputs.filter(i => !i.getAttribute('name')));
  const clusters = new Map();
  for (const inp of lone) {
    const t = controlType(inp);
    let anchor = null;
    for (const a of ancestors(inp)) {
      if (lone.some(o => o !== inp && controlType(o) === t && contains(a, o))) { anchor = a; break; }
    }
    if (!anchor) continue;
    const key = anchor;
    if (!clusters.has(key)) clusters.set(key, {t, items: []});
    clusters.get(key).items.push(inp);
  }
  // Tighter clusters first, so a stray checkbox (a flag) that only meets the answers higher up stays alone.
  const entries = [...clusters.entries()].sort((a, b) => ancestors(b[0]).length - ancestors(a[0]).length);
  for (const [, c] of entries) addGroup(c.t, c.items, 'input');
}

// 2. ARIA radios/checkboxes/options (custom widgets), grouped by their radiogroup/group/listbox, else by cluster.
{
  const aria = controls.filter(c => c.tagName !== 'INPUT' && controlType(c) && !claimed.has(c));
  const buckets = new Map();
  for (const el of aria) {
    const t = controlType(el);
    let container = null;
    for (const a of ancestors(el)) {
      const role = (a.getAttribute('role') || '').toLowerCase();
      if (role === 'radiogroup' || role === 'group' || role === 'listbox' || role === 'menu' || role === 'list' || a.tagName === 'FIELDSET') { container = a; break; }
    }
    if (!container) {
      for (const a of ancestors(el)) if (aria.some(o => o !== el && controlType(o) === t && contains(a, o))) { container = a; break; }
    }
    if (!container) continue;
    if (!buckets.has(container)) buckets.set(container, new Map());
    const m = buckets.get(container);
    if (!m.has(t)) m.set(t, []);
    m.get(t).push(el);
  }
  for (const [container, m] of buckets) for (const [t, items] of m) addGroup(t === 'option' ? 'radio' : t, items, 'aria', {container});
}

// 3. <select> dropdowns.
const selectGroups = [];
for (const sel of controls.filter(c => c.tagName === 'SELECT')) {
  const opts = [...sel.querySelectorAll('option')].filter(o => !o.disabled || o.value !== '');
  const real = opts.filter((o, i) => {
    const t = collapse(o.textContent);
    if (!t) return false;
    if (o.value === '' || /dummy|default|placeholder/i.test(o.value)) return false;
    if (i === 0 && /^(?:[-–—.\s]*|select.*|choose.*|pick.*|please.*|bitte.*|wählen.*|choisi.*|sélection.*|seleccion.*|elij.*|---.*|\.\.\..*)$/i.test(t)) return false;
    return true;
  });
  if (real.length < 2) continue;
  selectGroups.push(sel);
  groups.push({kind: sel.multiple ? 'checkbox' : 'select', opts: [sel], select: sel, optionEls: real, source: 'select'});
  claimed.add(sel);
}

// 4. Answer tiles: repeated clickable siblings whose names say answer/option/choice.
const TILE_HINT = /(?:^|[^a-z])(answer|answers|option|options|choice|choices|tile|tiles|alternative|alternatives|response|reply|antwort|antworten|respuesta|reponse|opcion|opcao|risposta|kaitou|sentaku)(?:[^a-z]|$)/;
function clickable(el) {
  const role = (el.getAttribute('role') || '').toLowerCase();
  return el.tagName === 'BUTTON' || role === 'button' || el.tagName === 'A' || el.hasAttribute('onclick') || el.getAttribute('tabindex') === '0' || el.tagName === 'LI' || el.tagName === 'LABEL';
}
function hintOf(el) {
  const attrs = [...el.attributes].map(a => a.name.startsWith('data-') ? a.name : '').join(' ');
  return (tokens(el).join(' ') + ' ' + attrs).toLowerCase();
}
{
  const parents = new Set();
  for (const el of all) if (el.nodeType === 1 && clickable(el) && !claimed.has(el)) { const p = up(el); if (p) parents.add(p); }
  for (const p of parents) {
    const kids = [...p.children].filter(k => clickable(k) && !claimed.has(k));
    if (kids.length < 2 || kids.length > 12) continue;
    const shape = k => k.tagName + '|' + (k.getAttribute('role') || '');
    const first = shape(kids[0]);
    if (!kids.every(k => shape(k) === first)) continue;
    if (kids.some(k => controls.some(c => contains(k, c)))) continue;
    if (kids.some(k => k.getAttribute('draggable') === 'true' || /sortable|drag|draggable|order|ordering|match|matching/.test(tokens(k).join(' ')))) continue;
    const hinted = kids.every(k => TILE_HINT.test(hintOf(k).replace(/-/g, ' '))) || TILE_HINT.test(hintOf(p).replace(/-/g, ' '));
    if (!hinted) continue;
    const texts = kids.map(k => textOf(k));
    if (texts.some(t => !t || t.length > 300)) continue;
    if (kids[0].tagName === 'A' && kids.every(k => (k.getAttribute('href') || '#') !== '#' && !(k.getAttribute('href') || '').startsWith('javascript'))) continue;
    addGroup('tile', kids, 'tile', {container: p});
  }
}

// 5. Lettered lists: sibling blocks that carry a consistent option-label sequence ("A.", "b)", "ア"), or a list styled alpha.
{
  const ALPHA = /^(upper|lower)-(alpha|latin|roman|greek)$|katakana|hiragana|cjk-earthly|iroha/;
  const parents = new Set();
  for (const el of all) if (el.children && el.children.length >= 2 && !claimed.has(el)) parents.add(el);
  for (const p of parents) {
    const kids = [...p.children].filter(k => !SKIP_TAGS.has(k.tagName) && k.tagName !== 'BR');
    if (kids.length < 2 || kids.length > 12) continue;
    if (kids.some(k => claimed.has(k) || controls.some(c => contains(k, c)) || [...claimed].some(c => contains(k, c)))) continue;
    const sameTag = kids.every(k => k.tagName === kids[0].tagName);
    if (!sameTag) continue;
    const texts = kids.map(k => textOf(k));
    if (texts.some(t => !t || t.length > 200)) continue;
    const s = style(p);
    const styled = (p.tagName === 'OL' && (/^[aAiI]$/.test(p.getAttribute('type') || '') || (s && ALPHA.test(s.listStyleType))));
    const labelled = isSequence(texts.map(t => { const l = labelAt(t); return l ? l.label : null; })) && !isSequence(texts.map(t => { const m = t.match(/^(\d{1,2})[.)]/); return m ? m[1] : null; }));
    if (!styled && !labelled) continue;
    addGroup('list', kids, 'list', {container: p});
  }
}

// ---------- per-group assembly ----------
const groupOf = new Map();
groups.forEach((g, i) => g.opts.forEach(o => groupOf.set(o, i)));
function foreignControl(node, gi) {
  // Does `node` hold a control or an option of another group (a boundary for the stem search)?
  for (const c of controls) if (contains(node, c) && groupOf.get(c) !== gi && !(groups[gi].opts.some(o => contains(o, c)) || (groups[gi].rows || []).some(r => contains(r, c)))) {
    const t = c.tagName === 'INPUT' ? (c.getAttribute('type') || 'text').toLowerCase() : '';
    if (t === 'search' || t === 'submit' || t === 'button' || t === 'reset' || t === 'image') continue;
    return true;
  }
  for (let j = 0; j < groups.length; j++) if (j !== gi && groups[j].opts.some(o => contains(node, o))) return true;
  return false;
}
function ownsOption(node, gi) { return groups[gi].opts.some(o => contains(node, o) || contains(o, node)) || (groups[gi].rows || []).some(r => contains(node, r) || contains(r, node)); }

// Text blocks of a subtree in document order: inline runs joined, block children recursed.
function blocksOf(el, scope) {
  const out = [];
  const rec = (node) => {
    let run = [];
    const flush = () => { if (run.length) { const t = collapse(run.map(n => n.nodeType === 3 ? n.data : textOf(n)).join(' ')); if (t) out.push({text: t, node: run[0].nodeType === 1 ? run[0] : node, el: node}); run = []; } };
    const kids = [...(node.shadowRoot ? node.shadowRoot.childNodes : []), ...node.childNodes];
    for (const k of kids) {
      if (k.nodeType === 3) { if (k.data.trim()) run.push(k); continue; }
      if (k.nodeType !== 1 || SKIP_TAGS.has(k.tagName)) continue;
      if (selfHidden(k) || srOnly(k)) continue;
      if (isInline(k) && !(k.querySelector && k.querySelector('p,div,h1,h2,h3,h4,h5,h6,li,ul,ol,table,fieldset,section'))) run.push(k);
      else { flush(); rec(k); }
    }
    flush();
  };
  if (!(selfHidden(el) && el !== scope) && !srOnly(el)) rec(el);
  return out;
}

function stemFor(gi) {
  const g = groups[gi];
  const first = g.opts[0];
  // Explicit associations first.
  const named = [g.container, lca(g.opts), ...ancestors(lca(g.opts) || first).slice(0, 3)].filter(Boolean);
  for (const c of named) {
    const lb = c.getAttribute && c.getAttribute('aria-labelledby');
    if (lb) { const t = cleanStem(lb.split(/\s+/).map(id => { const e = byId(c, id); return e ? textOf(e) : ''; }).join(' ')); if (t && !isMeta(t) && !isInstruction(t)) return {text: t}; }
    if (c.tagName === 'FIELDSET') {
      const legend = [...c.children].find(k => k.tagName === 'LEGEND');
      if (legend && !srOnly(legend)) { const t = cleanStem(textOf(legend)); if (t && !isMeta(t) && !isInstruction(t)) return {text: t}; }
    }
  }
  if (g.select) {
    const sel = g.select;
    const lb = sel.getAttribute('aria-labelledby');
    if (lb) { const t = cleanStem(lb.split(/\s+/).map(id => { const e = byId(sel, id); return e ? textOf(e) : ''; }).join(' ')); if (t && !isMeta(t)) return {text: t}; }
    if (sel.labels && sel.labels.length) { const t = cleanStem([...sel.labels].map(l => textOf(l)).join(' ')); if (t && !isMeta(t) && !isInstruction(t)) return {text: t}; }
  }
  // Nearest preceding text block, climbing the composed tree; stop at anything that belongs to another question.
  for (let node = first; node && node.nodeType === 1; node = up(node)) {
    if (node.tagName === 'BODY') break;
    const parent = up(node);
    const siblings = [];
    if (node.parentNode && node.parentNode.nodeType === 11) siblings.push(...node.parentNode.childNodes);
    else if (node.parentNode) siblings.push(...node.parentNode.childNodes);
    const idx = siblings.indexOf(node);
    let inlineRun = [];
    const consider = (text, el) => {
      const t = cleanStem(text);
      if (!t || isMeta(t) || isInstruction(t)) return null;
      if (el && el.nodeType === 1 && inChromeStem(el)) return null;
      return t;
    };
    for (let i = idx - 1; i >= 0; i--) {
      const s = siblings[i];
      if (s.nodeType === 3) { if (s.data.trim()) inlineRun.unshift(s.data); continue; }
      if (s.nodeType !== 1 || SKIP_TAGS.has(s.tagName)) continue;
      if (ownsOption(s, gi)) { inlineRun = []; continue; }
      if (foreignControl(s, gi)) { const t = inlineRun.length ? consider(inlineRun.join(' '), null) : null; return t ? {text: t} : null; }
      if (s.tagName === 'LEGEND' && srOnly(s)) continue;
      if (parent && hiddenWithin(s, parent)) continue;
      if (isInline(s) && !s.querySelector('p,div,h1,h2,h3,h4,h5,h6,li,ul,ol,table')) { inlineRun.unshift(textOf(s)); continue; }
      if (inlineRun.length) { const t = consider(inlineRun.join(' '), null); if (t) return {text: t}; inlineRun = []; }
      const blocks = blocksOf(s, s);
      for (let b = blocks.length - 1; b >= 0; b--) { const t = consider(blocks[b].text, blocks[b].node); if (t) return {text: t}; }
    }
    if (inlineRun.length) { const t = consider(inlineRun.join(' '), null); if (t) return {text: t}; }
  }
  return null;
}
function inChromeStem(el) { return false && el; }

// Region of the question: highest ancestor of the options holding no other group.
function regionOf(gi) {
  const g = groups[gi];
  let region = lca(g.opts) || g.opts[0];
  for (let n = up(region); n && n.nodeType === 1 && n.tagName !== 'BODY'; n = up(n)) {
    if (groups.some((h, j) => j !== gi && h.opts.some(o => contains(n, o)))) break;
    region = n;
  }
  return region;
}

// Key revealed by the page: feedback text, then data attributes/classes on options, then tick marks.
const KEY_TEXT_RE = /(?:the\s+)?(?:correct|right)\s+answers?\s*(?:is|are|was|were)?\s*[:：]\s*(.+)$|(?:the\s+)?(?:correct|right)\s+answers?\s+(?:is|are|was|were)\s+(.+)$|(?:die\s+)?richtigen?\s+antworten?\s*(?:ist|sind|lautet|lauten)?\s*[:：]?\s*(.+)$|(?:la\s+)?bonnes?\s+réponses?\s*(?:est|sont)?\s*[:：]?\s*(.+)$|(?:la\s+)?respuestas?\s+correctas?\s*(?:es|son)?\s*[:：]?\s*(.+)$|(?:a\s+)?respostas?\s+corretas?\s*(?:é|são)?\s*[:：]?\s*(.+)$|(?:la\s+)?rispost[ae]\s+corrett[ae]\s*(?:è|sono)?\s*[:：]?\s*(.+)$|правильн\w+\s+ответ\w*\s*[:：]?\s*(.+)$|(?:正解|正答)\s*(?:は)?\s*[:：]?\s*(.+)$/i;
function norm(s) { return collapse(s).toLowerCase().replace(/[.。]$/, ''); }
function matchAnswers(answerText, options) {
  answerText = collapse(answerText).replace(/[.。]$/, '').replace(/^['"‘’“”«»「『]+|['"‘’“”«»」』]+$/g, '');
  const whole = norm(answerText);
  const opts = options.map(norm);
  let i = opts.indexOf(whole);
  if (i >= 0) return [i];
  const pieces = answerText.split(/\s*(?:[,;，、]|\s+and\s+|\s+und\s+|\s+et\s+|\s+y\s+)\s*/).map(norm).filter(Boolean);
  const found = [];
  for (const p of pieces) { const j = opts.indexOf(p); if (j < 0) return null; if (!found.includes(j)) found.push(j); }
  if (found.length) return found;
  // A bare label ("B", "ア") naming the option by position.
  const lab = whole.match(/^\(?([a-z]|[\u30a2\u30a4\u30a6\u30a8\u30aa])\)?$/i);
  if (lab) { for (const seq of SEQUENCES) { const k = seq.toLowerCase().indexOf(lab[1].toLowerCase()); if (k >= 0 && k < options.length) return [k]; } }
  return null;
}
const POS_TOKENS = new Set(['correct', 'right', 'iscorrect', 'correctanswer', 'rightanswer', 'answercorrect', 'h5pcorrect', 'true']);
const NEG_TOKENS = new Set(['incorrect', 'wrong', 'not', 'false', 'iswrong', 'wronganswer', 'user', 'selected', 'chosen']);
function markSignal(el) {
  // +1 when classes/data attributes on this element say "correct answer".
  const toks = tokens(el);
  const joined = toks.join('');
  let pos = toks.includes('correct') || toks.includes('right') || /correctanswer|rightanswer|answercorrect|iscorrect|correctoption|correctchoice/.test(joined);
  if (toks.includes('incorrect') || toks.includes('wrong') || /incorrect|wronganswer|notcorrect/.test(joined)) pos = false;
  for (const a of el.attributes) {
    const n = a.name.toLowerCase(), v = (a.value || '').toLowerCase();
    if (/^data-(?:is-?)?correct(?:-answer)?$|^data-answer-correct$|^data-right$|^data-iscorrect$/.test(n)) {
      if (v === '' || v === 'true' || v === '1' || v === 'yes' || v === 'correct') pos = true; else return 0;
    }
    if (n === 'data-correctness' || n === 'data-state' || n === 'data-result') { if (v === 'correct' || v === 'right') pos = true; }
  }
  return pos ? 1 : 0;
}
function keyFor(gi, optionTexts, region) {
  const g = groups[gi];
  // (a) feedback text in the question's region, outside the options.
  const blocks = blocksOf(region, region).filter(b => !ownsOption(b.el, gi) || !g.opts.some(o => contains(b.el, o)));
  for (const b of blocks) {
    if (g.rows && g.rows.some(r => contains(r, b.node))) continue;
    const m = b.text.match(KEY_TEXT_RE);
    if (m) { const ans = m.slice(1).find(Boolean); if (ans) { const k = matchAnswers(ans.replace(MARK_RE, ''), optionTexts); if (k) return k; } }
  }
  // (b) classes / data attributes on the option, its row, or its select <option>.
  const rows = g.rows;
  const marked = [];
  rows.forEach((row, i) => {
    const chain = [g.optEls[i]];
    for (let n = g.optEls[i]; n && n !== row; n = up(n)) chain.push(n);
    chain.push(row);
    if (g.optEls[i] !== row) for (const d of row.querySelectorAll('*')) if (d.tagName !== 'IMG') chain.push(d);
    if (chain.some(markSignal)) marked.push(i);
  });
  if (marked.length && marked.length < rows.length) return marked;
  // (c) tick marks and tick images next to options (a cross marks a wrong pick, never the key).
  const ticks = [];
  rows.forEach((row, i) => {
    const raw = row.textContent || '';
    const imgs = row.querySelectorAll ? [...row.querySelectorAll('img')].filter(isMarkImage) : [];
    const imgTick = imgs.some(im => !/incorrect|wrong|cross|false/i.test((im.getAttribute('alt') || '') + (im.getAttribute('src') || '')));
    if ((TICK_RE.test(raw) && !CROSS_RE.test(raw)) || imgTick) ticks.push(i);
  });
  if (ticks.length && ticks.length < rows.length) return ticks;
  return null;
}

// Rating scales, Likert items, NPS, stars, polls: choice groups that are not quiz questions.
const LIKERT = /^(strongly agree|agree|neutral|disagree|strongly disagree|somewhat agree|somewhat disagree|neither agree nor disagree|very satisfied|satisfied|dissatisfied|very dissatisfied|neither satisfied nor dissatisfied|very likely|likely|unlikely|very unlikely|excellent|very good|good|fair|poor|very poor|always|often|sometimes|rarely|never|not at all likely|extremely likely|stimme voll zu|stimme zu|stimme nicht zu|teils teils|d'accord|pas d'accord|tout à fait d'accord|de acuerdo|en desacuerdo)$/i;
function isRating(stem, opts, region) {
  if (opts.every(o => /^[★☆⭐✩✪\s]+$/.test(o))) return true;
  if (opts.filter(o => LIKERT.test(o)).length >= Math.max(2, opts.length - 1)) return true;
  const nums = opts.map(o => /^\d{1,2}$/.test(o) ? parseInt(o, 10) : null);
  const consecutive = nums.every((n, i) => n !== null && (i === 0 || n === nums[i - 1] + 1));
  if (consecutive && opts.length >= 5 && (nums[0] === 0 || nums[0] === 1) && /rate|rating|likely|recommend|satisf|scale|how (?:much|well|easy|useful)|bewert|empfehl|zufrieden|note|évaluez|recomend/i.test(stem)) return true;
  if (consecutive && opts.length === 11 && nums[0] === 0) return true;
  if (/\b(?:stars?|sterne?|étoiles?)\b/i.test(opts.join(' ')) && opts.every(o => /\d/.test(o))) return true;
  if (/how (?:satisfied|likely|would you rate)|rate (?:this|your|our)|wie zufrieden|wie wahrscheinlich/i.test(stem)) return true;
  return false;
}
const CHROME_OPTION_SETS = /^(english|deutsch|français|español|italiano|português|nederlands|polski|русский|日本語|中文|한국어|newest|oldest|most popular|relevance|price.*|a-z|z-a|all|easy|medium|hard|beginner|intermediate|advanced)$/i;

const questions = [];
groups.forEach((g, gi) => {
  // Options and their rows.
  if (g.source === 'select') {
    g.optEls = g.optionEls; g.rows = g.optionEls;
  } else {
    let opts = g.opts;
    g.optEls = opts;
    g.rows = opts.map(o => rowOf(o, opts));
  }
});
groups.forEach((g, gi) => {
  let texts = g.source === 'select' ? g.optEls.map(o => collapse(o.textContent)) : g.optEls.map((o, i) => optionLabel(o, g.rows[i]));
  // Options hidden within a visible question (Moodle's "clear my choice") are not choices.
  const scope = lca(g.rows) || g.rows[0];
  if (g.source !== 'select') {
    const keep = g.rows.map(r => !hiddenWithin(r, up(scope) || scope));
    if (keep.filter(Boolean).length >= 2 && keep.some(k => !k)) {
      g.optEls = g.optEls.filter((_, i) => keep[i]); g.rows = g.rows.filter((_, i) => keep[i]); texts = texts.filter((_, i) => keep[i]);
    }
  }
  if (texts.length < 2 || texts.some(t => !t)) return;
  if (inChrome(g.select || scope)) return;
  if (new Set(texts.map(t => t.toLowerCase())).size !== texts.length) return; // "Flag question" x3: not answers
  if (g.source !== 'select') {
    // An option's row holding a whole other question means these were per-question widgets (flags), not answers.
    if (g.rows.some(r => foreignControl(r, gi))) return;
    if (g.optEls.some((o, i) => { for (let n = o; n; n = up(n)) { if (isChromeEl(n)) return true; if (n === g.rows[i]) break; } return false; })) return;
  }
  const stem = stemFor(gi);
  if (!stem) return;
  // Dropdowns for sorting, language, filters, or inline gaps in a sentence are not questions.
  if (g.select) {
    const s = g.select;
    const hint = (tokens(s).join(' ') + ' ' + (s.getAttribute('name') || '') + ' ' + (s.getAttribute('aria-label') || '')).toLowerCase();
    if (/lang|locale|sort|order|filter|difficulty|level|category|class|group|country|currency|per.?page|page.?size|theme/.test(hint) && !/question|frage|answer|input|problem|choice/.test(hint)) return;
    if (texts.every(t => CHROME_OPTION_SETS.test(t))) return;
    if (/^(?:sort|order|filter|language|sprache|difficulty|level|category|class|group|show|region|year|grade)\b.{0,30}$/i.test(stem.text) && stem.text.length <= 40) return;
    const p = s.parentElement;
    if (p && /^(P|SPAN|TD|LI)$/.test(p.tagName)) {
      const before = collapse([...p.childNodes].slice(0, [...p.childNodes].indexOf(s)).map(n => n.textContent).join(' '));
      const after = collapse([...p.childNodes].slice([...p.childNodes].indexOf(s) + 1).map(n => n.textContent).join(' '));
      if (before && after) return; // a gap inside a sentence: fill-in
    }
    const region = regionOf(gi);
    if (region.querySelectorAll && region.querySelectorAll('select').length >= 2) {
      const sets = [...region.querySelectorAll('select')].map(x => [...x.options].map(o => collapse(o.textContent)).join('|'));
      if (sets.every(x => x === sets[0])) return; // matching: every row picks from the same list
    }
  }
  if (g.source === 'tile' && texts.some(t => /^(submit|next|previous|back|skip|check|hint|continue|finish|start|weiter|zurück|abgeben|suivant|siguiente)$/i.test(t))) return;
  texts = stripLabels(texts.map(t => t.replace(MARK_RE, '').trim()));
  if (texts.some(t => !t)) return;
  const region = regionOf(gi);
  const tokensUp = [region, ...ancestors(region)].flatMap(tokens);
  if (tokensUp.some(t => /^(poll|polls|survey|rating|likert|nps|vote|voting|feedback)$/.test(t))) return;
  if (isRating(stem.text, texts, region)) return;
  let kind = g.kind === 'checkbox' ? 'multiple' : 'single';
  if (isTrueFalse(texts)) kind = 'true_false';
  const q = {text: stem.text, kind, options: texts, order: order.get(g.opts[0]), gi};
  const key = keyFor(gi, texts, region);
  if (key) q.correct = key.slice().sort((a, b) => a - b);
  questions.push(q);
});
questions.sort((a, b) => a.order - b.order);

// Answer key printed at the end of the page: "Answer key: 1. B 2. A, C".
{
  const KEY_HEAD = /^(?:answer\s*key|answers|key|solutions?|lösungen?|lösungsschlüssel|antworten|réponses|corrigé|respuestas|soluciones|解答|正解|答え)\s*[:：]?/i;
  const blocks = blocksOf(document.body, document.body);
  let start = -1;
  for (let i = 0; i < blocks.length; i++) if (KEY_HEAD.test(blocks[i].text) && blocks[i].text.length <= 600) start = i;
  if (start >= 0 && questions.length) {
    // The heading's own text plus the following blocks that read like key entries ("1. B", "2) A, C").
    const entry = t => t.split(/[\s.,;:)(\-–—=&/]+/).filter(Boolean).every(w => /^\d{1,3}$|^[A-Za-z\u30a2-\u30ff]$|^(?:and|und)$/.test(w));
    const parts = [blocks[start].text.replace(KEY_HEAD, ' ')];
    for (let i = start + 1; i < blocks.length && i < start + 200 && entry(blocks[i].text); i++) parts.push(blocks[i].text);
    const keyText = parts.join(' ');
    const re = /(\d{1,3})\s*[.):\-–—=]?\s*((?:\(?[A-Za-z\u30a2-\u30ff]\)?(?:\s*(?:,|&|\/|and|und)\s*)?)+?)(?=\s+\d{1,3}\s*[.):\-–—=]|\s*$|\s*[;|])/g;
    let m;
    while ((m = re.exec(keyText))) {
      const n = parseInt(m[1], 10);
      const q = questions[n - 1];
      if (!q || q.correct) continue;
      const letters = m[2].match(/[A-Za-z\u30a2-\u30ff]/g) || [];
      const idx = [];
      for (const l of letters) {
        for (const seq of SEQUENCES) { const k = seq.indexOf(l.toUpperCase() === l && /[a-z]/i.test(l) ? l : l); const kk = k >= 0 ? k : seq.indexOf(l.toUpperCase()); if (kk >= 0) { if (kk < q.options.length && !idx.includes(kk)) idx.push(kk); break; } }
      }
      if (idx.length) q.correct = idx.sort((a, b) => a - b);
    }
  }
}

// Title: the page's main heading, else the document title.
function titleOf() {
  const h = all.find(e => e.tagName === 'H1' || ((e.getAttribute && e.getAttribute('role') === 'heading') && e.getAttribute('aria-level') === '1'));
  const t = h ? textOf(h) : '';
  return t || collapse(document.title) || null;
}
return {
  title: titleOf(),
  questions: questions.map(q => { const o = {text: q.text, kind: q.kind, options: q.options}; if (q.correct) o.correct = q.correct; return o; }),
  stats: {nodes: all.length, text_chars: textChars, groups: groups.length},
};
