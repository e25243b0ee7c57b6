// The oncely dashboard: polls /api/overview, draws the queues, their throughput and the inbox
// scopes, lists dead letters and posts replays and purges. Plain JS, no dependency; every piece
// of store data is written with textContent (never parsed as HTML).
'use strict';

(() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const CSRF = meta('oncely-csrf');
  const SHOW_PAYLOADS = meta('oncely-show-payloads') === 'true';
  const POLL_MS = 2000;
  const HISTORY = 90; // samples kept per queue for the charts (3 minutes at 2 s)
  const TOKEN_KEY = 'oncely-token';

  // A token given once as ?token=... is kept in this tab's sessionStorage and removed from the
  // address bar (and so from the history) at once.
  const url = new URL(window.location.href);
  if (url.searchParams.has('token')) {
    sessionStorage.setItem(TOKEN_KEY, url.searchParams.get('token'));
    url.searchParams.delete('token');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
  }

  const $ = (id) => document.getElementById(id);
  const state = {
    queues: [], scopes: [], history: new Map(), deadQueue: '', deadItems: [], deadNext: null,
    selected: new Set(), timer: null, stopped: false, lastDead: new Map(),
  };

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const fmtNum = (n) => (n === null || n === undefined ? '-' : Number(n).toLocaleString('en-US'));
  const fmtRate = (r) => (r === null || r === undefined ? '-' : r < 10 ? r.toFixed(1) : Math.round(r).toLocaleString('en-US'));
  const fmtTime = (ms) => (ms === null || ms === undefined ? '-' : new Date(ms).toISOString().replace('T', ' ').replace('Z', ' UTC'));
  function fmtAge(ms) {
    if (ms === null || ms === undefined) return '-';
    const s = ms / 1000;
    if (s < 1) return `${Math.round(ms)} ms`;
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s / 60) % 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s / 3600) % 24)} h`;
  }

  let toastTimer;
  function toast(text) {
    const t = $('toast');
    t.textContent = text;
    t.classList.add('shown');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => t.classList.remove('shown'), 4000);
  }

  class Unauthorized extends Error {}

  async function api(path, body) {
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { headers, credentials: 'omit', cache: 'no-store' };
    if (body !== undefined) {
      init.method = 'POST';
      headers['Content-Type'] = 'application/json';
      headers['X-Oncely-CSRF'] = CSRF;
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (res.status === 401) throw new Unauthorized('the token was refused');
    let data = null;
    try { data = await res.json(); } catch (_) { /* not JSON */ }
    if (!res.ok) throw new Error((data && data.error) || `HTTP ${res.status}`);
    return data;
  }

  function showLogin(message) {
    state.stopped = true;
    clearTimeout(state.timer);
    $('main').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('status').textContent = 'token required';
    $('token').focus();
  }

  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token').value);
    $('token').value = '';
    start();
  });

  // ---- confirmation -----------------------------------------------------------------------
  function confirmStep(text) {
    return new Promise((resolve) => {
      const d = $('confirm');
      $('confirm-text').textContent = text;
      const done = (yes) => {
        $('confirm-yes').onclick = null;
        $('confirm-no').onclick = null;
        d.onclose = null;
        if (d.open) d.close();
        resolve(yes);
      };
      $('confirm-yes').onclick = () => done(true);
      $('confirm-no').onclick = () => done(false);
      d.onclose = () => done(false);
      d.showModal();
    });
  }

  // ---- queues and charts ------------------------------------------------------------------
  function record(now, queues) {
    for (const q of queues) {
      let h = state.history.get(q.queue);
      if (!h) { h = []; state.history.set(q.queue, h); }
      const prev = h[h.length - 1];
      const sample = { t: now, c: q.counts, depth: q.depth, rates: null };
      if (prev && now > prev.t) {
        const dt = (now - prev.t) / 1000;
        const rate = (k) => Math.max(0, (q.counts[k] - prev.c[k]) / dt);
        sample.rates = { enqueued: rate('enqueued'), delivered: rate('delivered'), dead_lettered: rate('dead_lettered') };
      }
      h.push(sample);
      if (h.length > HISTORY) h.shift();
    }
  }

  const SERIES = [
    ['enqueued', '#2563eb', 'enqueued/s'],
    ['delivered', '#15803d', 'delivered/s'],
    ['dead_lettered', '#b91c1c', 'dead-lettered/s'],
  ];
  const SVGNS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  }

  function chart(queue, h) {
    const W = 320, H = 110, L = 40, B = 16, T = 6, R = 6;
    const pts = h.filter((s) => s.rates);
    const max = Math.max(1, ...pts.flatMap((s) => SERIES.map(([k]) => s.rates[k])));
    const t0 = h.length ? h[0].t : 0;
    const t1 = h.length ? h[h.length - 1].t : 1;
    const span = Math.max(30_000, t1 - t0); // the samples kept, at least 30 s
    const x = (t) => L + (W - L - R) * (1 - (t1 - t) / span);
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const s = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `throughput of ${queue}` });
    s.append(svg('line', { x1: L, y1: T, x2: L, y2: H - B, stroke: '#cbd5e1' }));
    s.append(svg('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: '#cbd5e1' }));
    for (const [v, label] of [[max, fmtRate(max)], [0, '0']]) {
      const tx = svg('text', { x: L - 4, y: y(v) + 4, 'text-anchor': 'end', 'font-size': 10, fill: '#6b7280' });
      tx.textContent = label;
      s.append(tx);
    }
    const tx = svg('text', { x: W - R, y: H - 3, 'text-anchor': 'end', 'font-size': 10, fill: '#6b7280' });
    tx.textContent = `last ${Math.round(span / 1000)} s`;
    s.append(tx);
    for (const [k, color] of SERIES) {
      if (pts.length === 0) continue;
      const d = pts.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.rates[k]).toFixed(1)}`).join(' ');
      s.append(svg('path', { d, fill: 'none', stroke: color, 'stroke-width': 1.5, 'data-series': k }));
    }
    const legend = el('div', { class: 'legend' },
      SERIES.map(([k, color, label]) => {
        const last = pts.length ? pts[pts.length - 1].rates[k] : null;
        const i = el('i');
        i.style.background = color;
        return el('span', {}, i, `${label} ${fmtRate(last)}`);
      }));
    return el('div', { class: 'chart', dataset: { queue } }, el('h3', {}, queue), s, legend);
  }

  function renderQueues(now) {
    const body = $('queues').tBodies[0];
    body.replaceChildren(...state.queues.map((q) => {
      const h = state.history.get(q.queue) || [];
      const last = h.length ? h[h.length - 1].rates : null;
      const cell = (field, text) => el('td', { class: 'n', dataset: { field } }, text);
      return el('tr', { dataset: { queue: q.queue } },
        el('td', { dataset: { field: 'queue' } }, q.queue),
        cell('ready', fmtNum(q.ready)), cell('scheduled', fmtNum(q.scheduled)), cell('leased', fmtNum(q.leased)),
        cell('dead', fmtNum(q.dead)), cell('depth', fmtNum(q.depth)), cell('oldest', fmtAge(q.oldest_age_ms)),
        cell('enqueued-rate', fmtRate(last && last.enqueued)), cell('delivered-rate', fmtRate(last && last.delivered)),
        cell('enqueued', fmtNum(q.counts.enqueued)), cell('delivered', fmtNum(q.counts.delivered)),
        cell('retried', fmtNum(q.counts.retried)), cell('dead-lettered', fmtNum(q.counts.dead_lettered)),
        cell('dropped', fmtNum(q.counts.dropped)));
    }));
    $('no-queues').hidden = state.queues.length > 0;
    $('charts').replaceChildren(...state.queues.map((q) => chart(q.queue, state.history.get(q.queue) || [])));
    for (const id of ['dead-queue', 'message-queue']) {
      const sel = $(id);
      const keep = sel.value;
      const opts = state.queues.map((q) => el('option', { value: q.queue }, `${q.queue}${id === 'dead-queue' ? ` (${fmtNum(q.dead)})` : ''}`));
      if (id === 'message-queue') opts.unshift(el('option', { value: '' }, 'any'));
      sel.replaceChildren(...opts);
      if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
    }
  }

  function renderScopes() {
    const body = $('scopes').tBodies[0];
    body.replaceChildren(...state.scopes.map((s) => {
      const cell = (field, n) => el('td', { class: 'n', dataset: { field } }, fmtNum(n));
      return el('tr', { dataset: { scope: s.scope } },
        el('td', { dataset: { field: 'scope' } }, s.scope),
        cell('in_progress', s.in_progress), cell('completed', s.completed), cell('succeeded', s.succeeded),
        cell('failed', s.failed), cell('seen', s.seen), cell('expired', s.expired));
    }));
    $('no-scopes').hidden = state.scopes.length > 0;
    $('scope-names').replaceChildren(...state.scopes.map((s) => el('option', { value: s.scope })));
  }

  // ---- dead letters -----------------------------------------------------------------------
  function headersNode(headers) {
    const entries = Object.entries(headers || {});
    if (!entries.length) return '-';
    return el('div', { class: 'mono' }, entries.map(([k, v]) => el('div', {}, `${k}: ${v}`)));
  }

  function renderDead() {
    const body = $('dead').tBodies[0];
    const q = state.deadQueue;
    body.replaceChildren(...state.deadItems.map((m) => el('tr', { dataset: { id: m.id } },
      el('td', {}, el('input', {
        type: 'checkbox', 'data-select': m.id, 'aria-label': `select ${m.id}`, checked: state.selected.has(m.id),
        onchange: (ev) => { ev.target.checked ? state.selected.add(m.id) : state.selected.delete(m.id); syncSelection(); },
      })),
      el('td', { class: 'mono id' }, el('a', { href: '#message', onclick: (ev) => { ev.preventDefault(); lookUpMessage(q, m.id); } }, m.id)),
      el('td', { dataset: { field: 'reason' } }, m.reason || '-'),
      el('td', { class: 'err', dataset: { field: 'last_error' } }, m.last_error || '-'),
      el('td', { class: 'n', dataset: { field: 'attempts' } }, fmtNum(m.attempts)),
      el('td', {}, headersNode(m.headers)),
      el('td', { dataset: { field: 'created' } }, fmtTime(m.created_at_ms)),
      el('td', {},
        el('button', { 'data-action': 'replay', onclick: () => replay([m.id]) }, 'Replay'), ' ',
        el('button', { 'data-action': 'purge', class: 'danger', onclick: () => purge([m.id]) }, 'Purge')))));
    const total = (state.queues.find((x) => x.queue === q) || { dead: 0 }).dead;
    $('dead-count').textContent = q ? `${fmtNum(state.deadItems.length)} shown of ${fmtNum(total)} dead in ${q}` : 'no queue';
    $('dead-more').hidden = state.deadNext === null;
    syncSelection();
  }

  function syncSelection() {
    for (const id of [...state.selected]) if (!state.deadItems.some((m) => m.id === id)) state.selected.delete(id);
    const n = state.selected.size;
    $('dead-replay-selected').disabled = n === 0;
    $('dead-purge-selected').disabled = n === 0;
    $('dead-replay-selected').textContent = `Replay selected (${n})`;
    $('dead-purge-selected').textContent = `Purge selected (${n})`;
    $('dead-all').checked = n > 0 && n === state.deadItems.length;
  }

  async function loadDead(more) {
    const q = state.deadQueue;
    if (!q) { state.deadItems = []; state.deadNext = null; renderDead(); return; }
    const after = more && state.deadNext !== null ? `&after=${state.deadNext}` : '';
    const page = await api(`/api/dead?queue=${encodeURIComponent(q)}&limit=100${after}`);
    if (q !== state.deadQueue) return;
    state.deadItems = more ? state.deadItems.concat(page.items) : page.items;
    state.deadNext = page.next_after;
    renderDead();
  }

  function plural(n, word) { return `${n} ${word}${n === 1 ? '' : 's'}`; }

  async function act(what, run) {
    try {
      await run();
    } catch (e) {
      if (e instanceof Unauthorized) return showLogin(e.message);
      toast(`${what} failed: ${e.message}`);
    }
    await refresh();
  }

  async function replay(ids) {
    const q = state.deadQueue;
    const text = ids.length === 1 ? `Replay dead letter ${ids[0]} of queue ${q}? It goes back to the queue, attempts reset, deliverable now.`
      : `Replay ${plural(ids.length, 'dead letter')} of queue ${q}? They go back to the queue, attempts reset, deliverable now.`;
    if (!(await confirmStep(text))) return;
    await act('replay', async () => {
      const r = await api('/api/replay', { queue: q, ids });
      for (const id of r.replayed) state.selected.delete(id);
      toast(`replayed ${plural(r.replayed.length, 'message')}${r.missing.length ? `; ${r.missing.length} no longer dead` : ''}`);
    });
  }

  async function purge(ids) {
    const q = state.deadQueue;
    const text = ids.length === 1 ? `Delete dead letter ${ids[0]} of queue ${q}? This cannot be undone.`
      : `Delete ${plural(ids.length, 'dead letter')} of queue ${q}? This cannot be undone.`;
    if (!(await confirmStep(text))) return;
    await act('purge', async () => {
      const r = await api('/api/purge', { queue: q, ids });
      toast(`purged ${plural(r.purged, 'dead letter')}`);
    });
  }

  async function purgeAll() {
    const q = state.deadQueue;
    if (!q) return;
    const total = (state.queues.find((x) => x.queue === q) || { dead: 0 }).dead;
    if (!(await confirmStep(`Delete ALL ${plural(total, 'dead letter')} of queue ${q}? This cannot be undone.`))) return;
    await act('purge', async () => {
      const r = await api('/api/purge', { queue: q, all: true });
      toast(`purged ${plural(r.purged, 'dead letter')}`);
    });
  }

  $('dead-queue').addEventListener('change', () => {
    state.deadQueue = $('dead-queue').value;
    state.selected.clear();
    loadDead(false).catch(fail);
  });
  $('dead-all').addEventListener('change', (ev) => {
    state.selected = new Set(ev.target.checked ? state.deadItems.map((m) => m.id) : []);
    renderDead();
  });
  $('dead-replay-selected').addEventListener('click', () => replay([...state.selected]));
  $('dead-purge-selected').addEventListener('click', () => purge([...state.selected]));
  $('dead-purge-all').addEventListener('click', purgeAll);
  $('dead-more').addEventListener('click', () => loadDead(true).catch(fail));

  // ---- look-ups ---------------------------------------------------------------------------
  function kv(pairs) {
    return el('dl', { class: 'kv' }, pairs.flatMap(([k, v, field]) => [el('dt', {}, k), el('dd', { dataset: { field } }, v)]));
  }

  function bytesNode(b, what) {
    if (!b) return '-';
    if (b.text !== undefined) return el('pre', { class: 'mono' }, b.text);
    if (b.hex !== undefined) return el('pre', { class: 'mono' }, b.hex);
    return `${fmtNum(b.size)} bytes (hidden: start the server with --show-payloads to show ${what})`;
  }

  function lookUpMessage(queue, id) {
    $('message-queue').value = queue || '';
    $('message-id').value = id;
    $('message-form').requestSubmit();
    $('message').scrollIntoView();
  }

  $('message-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const q = $('message-queue').value;
    const id = $('message-id').value;
    const out = $('message');
    try {
      const r = await api(`/api/message?id=${encodeURIComponent(id)}${q ? `&queue=${encodeURIComponent(q)}` : ''}`);
      if (!r.found.length) { out.replaceChildren(el('p', { class: 'muted', dataset: { field: 'none' } }, `no message ${id} in ${q || 'any queue'}`)); return; }
      out.replaceChildren(...r.found.map((m) => kv([
        ['queue', m.queue, 'queue'], ['id', m.id, 'id'], ['state', m.state, 'state'], ['reason', m.reason || '-', 'reason'],
        ['key', m.key || '-', 'key'], ['attempts', `${m.attempts}${m.max_attempts ? ` of ${m.max_attempts}` : ''}`, 'attempts'],
        ['mode', m.mode || '-', 'mode'], ['created', fmtTime(m.created_at_ms), 'created'],
        ['first attempt', fmtTime(m.first_attempt_at_ms), 'first_attempt'], ['available at', fmtTime(m.available_at_ms), 'available_at'],
        ['lease until', fmtTime(m.lease_until_ms), 'lease_until'], ['last error', m.last_error || '-', 'last_error'],
        ['headers', headersNode(m.headers), 'headers'], ['payload', bytesNode(m.payload, 'payloads'), 'payload'],
      ])));
    } catch (e) { fail(e); }
  });

  $('inbox-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const scope = $('inbox-scope').value;
    const id = $('inbox-id').value;
    const out = $('inbox');
    try {
      const r = await api(`/api/inbox?scope=${encodeURIComponent(scope)}&id=${encodeURIComponent(id)}`);
      if (!r.record) { out.replaceChildren(el('p', { class: 'muted', dataset: { field: 'none' } }, `no record ${id} in scope ${scope}`)); return; }
      const rec = r.record;
      out.replaceChildren(kv([
        ['scope', r.scope, 'scope'], ['id', r.id, 'id'], ['state', rec.state, 'state'],
        ['counts', rec.live ? 'yes (live)' : 'no (expired, awaiting collection)', 'live'],
        ['expires', `${fmtTime(rec.expires_at_ms)} (${rec.live ? 'in ' + fmtAge(rec.expires_at_ms - r.now_ms) : 'passed'})`, 'expires'],
        ['lease until', fmtTime(rec.lease_until_ms), 'lease_until'], ['fencing token', String(rec.token), 'token'],
        ['result', bytesNode(rec.result, 'results'), 'result'],
      ]));
    } catch (e) { fail(e); }
  });

  // ---- polling ----------------------------------------------------------------------------
  function fail(e) {
    if (e instanceof Unauthorized) return showLogin(e.message);
    $('status').textContent = `error: ${e.message}`;
  }

  async function refresh() {
    const o = await api('/api/overview');
    state.queues = o.queues;
    state.scopes = o.scopes;
    record(o.now_ms, o.queues);
    $('store').textContent = o.store;
    if (!state.deadQueue || !o.queues.some((q) => q.queue === state.deadQueue)) {
      const withDead = o.queues.find((q) => q.dead > 0) || o.queues[0];
      state.deadQueue = withDead ? withDead.queue : '';
    }
    renderQueues(o.now_ms);
    $('dead-queue').value = state.deadQueue;
    renderScopes();
    // The dead-letter list follows the store: reloaded when the queue's dead count or totals move.
    const q = o.queues.find((x) => x.queue === state.deadQueue);
    const sig = q ? `${q.dead}/${q.counts.dead_lettered}` : '';
    if (sig !== state.lastDead.get(state.deadQueue) || state.deadItems.length === 0) {
      state.lastDead.set(state.deadQueue, sig);
      await loadDead(false);
    }
    $('status').textContent = `updated ${new Date().toLocaleTimeString()}${SHOW_PAYLOADS ? ' · payloads shown' : ''}`;
    if (!document.body.dataset.ready) {
      document.body.dataset.ready = '1';
      performance.mark('oncely-numbers-shown');
    }
  }

  async function tick() {
    if (state.stopped) return;
    try {
      await refresh();
    } catch (e) {
      fail(e);
      if (e instanceof Unauthorized) return;
    }
    state.timer = setTimeout(tick, POLL_MS);
  }

  function start() {
    state.stopped = false;
    $('login').hidden = true;
    $('main').hidden = false;
    clearTimeout(state.timer);
    tick();
  }

  start();
})();
