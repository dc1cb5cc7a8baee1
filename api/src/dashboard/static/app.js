// TechDeck MCP operator dashboard. Plain browser JavaScript, no build step.
//
// Figures come from the REST API once, then stay current from the WebSocket channels: nothing
// here polls. Queue counts are re-read (at most a few times a second) when a task event says
// they changed, because the server's counts are the only exact ones.
'use strict';

(() => {
  const API = '/api/v1';
  const STAGES = ['ingestion', 'standardization', 'validation', 'processing', 'quality_assessment', 'export'];
  const STORE_KEY = 'mcp.dashboard.auth';
  const KEEP_PIPELINES = 20;
  const KEEP_ALERTS = 50;
  // Renew the access token this long before it expires, so a request never races the expiry.
  const RENEW_MARGIN_MS = 30000;
  // Task events arrive in bursts; one queue read covers every event of a burst.
  const QUEUE_REFRESH_MS = 400;

  const $ = (sel, root = document) => root.querySelector(sel);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else node.setAttribute(k, v);
    }
    node.append(...children);
    return node;
  }

  function announce(text) {
    $('#announcer').textContent = text;
  }

  function clock(ts) {
    const d = ts ? new Date(ts) : null;
    return d && !Number.isNaN(d.getTime()) ? d.toLocaleTimeString() : '—';
  }

  const label = (s) => String(s ?? '—').replace(/_/g, ' ');

  // ---- credentials: kept for this tab only, never in a cookie or localStorage

  let auth = null;
  try {
    auth = JSON.parse(sessionStorage.getItem(STORE_KEY));
  } catch {
    auth = null;
  }

  function keep(pair, username) {
    auth = {
      access: pair.access_token,
      refresh: pair.refresh_token,
      expiresAt: Date.now() + Number(pair.expires_in || 0) * 1000,
      username,
    };
    sessionStorage.setItem(STORE_KEY, JSON.stringify(auth));
  }

  class ApiError extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function request(method, path, body, token) {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (token) headers.authorization = `Bearer ${token}`;
    let res;
    try {
      res = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch {
      throw new ApiError(0, 'The server cannot be reached.');
    }
    const json = await res.json().catch(() => null);
    if (!res.ok || !json || json.success === false) {
      throw new ApiError(res.status, json?.error?.message || `The server answered ${res.status}.`, json?.error?.code);
    }
    return json;
  }

  // One renewal at a time: a refresh token works once.
  let renewing = null;
  function renew() {
    if (!auth) return Promise.reject(new ApiError(401, 'Signed out.'));
    if (!renewing) {
      const { refresh, username } = auth;
      renewing = request('POST', '/auth/refresh', { refresh_token: refresh })
        .then((r) => keep(r.data, username))
        .catch((e) => {
          if (e.status === 401) signOut('Your session ended; sign in again.');
          throw e;
        })
        .finally(() => {
          renewing = null;
        });
    }
    return renewing;
  }

  async function token() {
    if (!auth) throw new ApiError(401, 'Signed out.');
    if (auth.expiresAt - Date.now() < RENEW_MARGIN_MS) await renew();
    return auth.access;
  }

  async function api(method, path, body) {
    try {
      return await request(method, path, body, await token());
    } catch (e) {
      if (e.status !== 401 || !auth) throw e;
      await renew();
      return request(method, path, body, await token());
    }
  }

  // ---- WebSocket channels: reconnect with backoff, resume after the last event seen

  const channels = [];
  // The newest event id any channel has seen. Ids are `<ms>-<seq>` from one bus, so they order
  // events across channels.
  let newestId = null;

  function isNewer(a, b) {
    const [am, as] = a.split('-').map(Number);
    const [bm, bs] = b.split('-').map(Number);
    return am > bm || (am === bm && as > bs);
  }

  function showConnection() {
    const down = channels.filter((c) => !c.live).map((c) => c.name);
    $('#connection').textContent = !channels.length
      ? 'Signed out'
      : down.length
        ? `Connecting: ${down.join(', ')}`
        : 'Live';
    $('#connection').dataset.state = !channels.length ? 'off' : down.length ? 'connecting' : 'live';
  }

  class Channel {
    constructor(name, path, handlers) {
      this.name = name;
      this.path = path;
      this.handlers = handlers;
      this.lastId = null;
      this.attempt = 0;
      this.ws = null;
      this.live = false;
      this.stopped = false;
      this.timer = null;
    }

    async open() {
      if (this.stopped) return;
      let t;
      try {
        t = await token();
      } catch {
        if (auth) this.later();
        return;
      }
      if (this.stopped) return;
      const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const ws = new WebSocket(`${scheme}//${location.host}${this.path}?token=${encodeURIComponent(t)}`);
      this.ws = ws;
      ws.addEventListener('open', () => {
        this.attempt = 0;
        this.live = true;
        showConnection();
        this.handlers.open?.(this);
      });
      ws.addEventListener('message', (m) => {
        let ev;
        try {
          ev = JSON.parse(m.data);
        } catch {
          return;
        }
        if (ev.id) {
          this.lastId = ev.id;
          if (!newestId || isNewer(ev.id, newestId)) newestId = ev.id;
        }
        if (ev.type === 'lagged') this.handlers.lagged?.(this);
        // An error answering this client's own request names no source; server-side errors
        // (a dead task, an unreachable dependency) do.
        else if (ev.type === 'error.occurred' && !ev.id && !ev.data?.source) {
          this.handlers.note?.(`The server refused a request: ${ev.data?.message || 'unknown error'}`);
        }
        else if (ev.type === 'replay_truncated') this.subscribe(ev.subscription, ev.data?.next_since);
        else this.handlers.event(ev, this);
      });
      ws.addEventListener('close', (e) => {
        if (this.ws !== ws) return;
        this.ws = null;
        this.live = false;
        // A channel that saw nothing yet resumes from where the others were when it dropped.
        if (!this.lastId) this.lastId = newestId;
        showConnection();
        if (this.stopped) return;
        if (e.code === 4403) {
          this.handlers.note?.(`Your role may not follow ${this.name}.`);
          return;
        }
        if (e.code === 4401) {
          // A rejected refresh token signs the tab out; anything else is retried.
          renew().finally(() => auth && this.later()).catch(() => {});
          return;
        }
        this.later();
      });
    }

    later() {
      if (this.stopped) return;
      const delay = Math.min(15000, 500 * 2 ** this.attempt++) * (0.75 + Math.random() / 2);
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.open(), delay);
    }

    send(msg) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
    }

    // Subscribes to what `what` names (everything when empty), replaying what was missed.
    subscribe(what = {}, since = this.lastId) {
      const msg = { action: 'subscribe' };
      for (const [k, v] of Object.entries(what || {})) if (v !== null && v !== undefined) msg[k] = v;
      if (since) msg.since = since;
      this.send(msg);
    }

    close() {
      this.stopped = true;
      this.live = false;
      clearTimeout(this.timer);
      if (this.ws) this.ws.close(1000);
      this.ws = null;
    }
  }

  // ---- queues

  let queueTimer = null;
  let queueBusy = false;
  let queueDirty = false;

  function refreshQueues() {
    queueDirty = true;
    if (!queueTimer && !queueBusy) queueTimer = setTimeout(loadQueues, QUEUE_REFRESH_MS);
  }

  async function loadQueues() {
    queueTimer = null;
    queueDirty = false;
    queueBusy = true;
    try {
      const r = await api('GET', '/queues');
      renderQueues(r.data || []);
      $('#queues-note').textContent = '';
    } catch (e) {
      if (auth) $('#queues-note').textContent = `Queue counts unavailable: ${e.message}`;
    } finally {
      queueBusy = false;
      if (queueDirty && auth) refreshQueues();
    }
  }

  function renderQueues(queues) {
    const body = $('#queues tbody');
    const rows = queues.map((q) => {
      const p = q.pending || {};
      const cell = (col, v) => el('td', { class: 'num', 'data-col': col, text: String(v ?? 0) });
      return el(
        'tr',
        { 'data-queue': q.name, 'data-capability': q.capability },
        el('th', { scope: 'row', text: q.name }),
        cell('critical', p.critical),
        cell('high', p.high),
        cell('medium', p.medium),
        cell('low', p.low),
        cell('scheduled', q.scheduled),
        cell('running', q.running),
        cell('dead', q.dead),
        cell('processed', q.processed_total),
        el('td', { 'data-col': 'state', class: q.paused ? 'warn' : '', text: q.paused ? 'paused' : 'open' }),
      );
    });
    body.replaceChildren(...rows);
  }

  // ---- schedules (read-only; no event announces a schedule change, so the list is re-read)

  const SCHEDULE_REFRESH_MS = 5000;
  let scheduleTimer = null;

  async function loadSchedules() {
    scheduleTimer = null;
    try {
      const r = await api('GET', '/schedules?limit=100');
      renderSchedules(r.data || []);
      $('#schedules-note').textContent = '';
    } catch (e) {
      if (auth) $('#schedules-note').textContent = `Schedules unavailable: ${e.message}`;
    } finally {
      if (auth) scheduleTimer = setTimeout(loadSchedules, SCHEDULE_REFRESH_MS);
    }
  }

  function renderSchedules(schedules) {
    const rows = schedules.map((s) => {
      const when = s.cron ? `${s.cron} (${s.time_zone})` : `every ${s.interval_seconds} s`;
      const next = (s.next_run_times || [])[0];
      return el(
        'tr',
        { 'data-schedule-id': s.id },
        el('th', { scope: 'row', text: s.name }),
        el('td', { 'data-col': 'when', text: when }),
        el('td', { 'data-col': 'starts', text: s.template_kind }),
        el('td', { 'data-col': 'next', text: next ? new Date(next).toLocaleString() : '—' }),
        el('td', { 'data-col': 'state', class: s.paused ? 'warn' : '', text: s.paused ? 'paused' : 'active' }),
      );
    });
    $('#schedules tbody').replaceChildren(...rows);
    $('#schedules-empty').hidden = rows.length > 0;
  }

  // ---- agents

  const agents = new Map();

  function upsertAgent(id, fields) {
    if (!id) return;
    const a = agents.get(id) || { id };
    for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) a[k] = v;
    agents.set(id, a);
  }

  function renderAgents() {
    const list = [...agents.values()].sort((a, b) => String(a.name).localeCompare(String(b.name)));
    const rows = list.map((a) =>
      el(
        'tr',
        { 'data-agent-id': a.id, 'data-status': a.status },
        el('th', { scope: 'row', text: a.name || a.id }),
        el('td', { text: label(a.type) }),
        el('td', {}, el('span', { class: `badge status-${a.status}`, text: label(a.status) })),
        el('td', {
          class: 'num',
          text: a.max_concurrency ? `${a.current_load ?? 0} / ${a.max_concurrency}` : String(a.current_load ?? '—'),
        }),
        el('td', { text: clock(a.last_seen) }),
      ),
    );
    $('#agents tbody').replaceChildren(...rows);
    $('#agents-note').textContent = list.length ? '' : 'No agent is registered.';
  }

  async function loadAgents() {
    try {
      const r = await api('GET', '/agents/discover?limit=1000');
      for (const a of r.data || []) {
        // The channel's snapshot may already be newer: fill in, never roll back a status.
        const known = agents.has(a.id);
        upsertAgent(a.id, {
          name: a.name,
          type: a.type,
          max_concurrency: a.max_concurrency,
          last_seen: a.last_seen,
          ...(known ? {} : { status: a.status, current_load: a.current_load }),
        });
      }
      renderAgents();
    } catch (e) {
      if (auth) $('#agents-note').textContent = `Agents unavailable: ${e.message}`;
    }
  }

  function onAgentEvent(ev) {
    const d = ev.data || {};
    if (ev.type === 'snapshot' && Array.isArray(d.agents)) {
      const seen = new Set();
      for (const a of d.agents) {
        seen.add(a.agent_id);
        upsertAgent(a.agent_id, { name: a.name, status: a.status, current_load: a.current_load });
      }
      for (const id of [...agents.keys()]) if (!seen.has(id)) agents.delete(id);
    } else if (ev.type === 'agent.deregistered') {
      agents.delete(d.agent_id);
    } else if (ev.type === 'agent.registered' || ev.type === 'agent.status_updated') {
      upsertAgent(d.agent_id, {
        name: d.name,
        type: d.type,
        status: d.status,
        current_load: d.current_load,
        max_concurrency: d.max_concurrency,
        last_seen: d.last_seen || ev.ts,
      });
    } else {
      return;
    }
    renderAgents();
  }

  // ---- pipelines

  const RANK = { pending: 0, running: 1, completed: 2, failed: 2, cancelled: 2 };
  const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
  const executions = new Map();
  // Capabilities with a raised `queue_unserved` alert: work waits on them and nothing live
  // serves them.
  const unserved = new Set();

  function execution(id) {
    let x = executions.get(id);
    if (x) return x;
    x = { id, status: 'pending', error: null, stages: {}, asked: false };
    for (const s of STAGES) x.stages[s] = { status: 'pending', progress: 0, shards: 0, shardProgress: new Map() };
    x.node = buildExecution(x);
    executions.set(id, x);
    $('#pipelines').prepend(x.node.root);
    trimExecutions();
    askSnapshot(x);
    return x;
  }

  function askSnapshot(x) {
    if (x.asked || !pipelineChannel?.live) return;
    x.asked = true;
    // Adds to the connection's subscriptions; the answer is the execution's snapshot.
    pipelineChannel.send({ action: 'subscribe', execution_id: x.id });
  }

  function trimExecutions() {
    let extra = executions.size - KEEP_PIPELINES;
    // A Map iterates in insertion order: the oldest finished executions go first.
    for (const x of executions.values()) {
      if (extra <= 0) break;
      if (!TERMINAL.has(x.status)) continue;
      x.node.root.remove();
      executions.delete(x.id);
      pipelineChannel?.send({ action: 'unsubscribe', execution_id: x.id });
      extra--;
    }
  }

  function buildExecution(x) {
    const status = el('span', { class: 'badge', text: '' });
    const overall = el('progress', { max: '100', value: '0', 'aria-label': `Execution ${x.id} overall progress` });
    const error = el('p', { class: 'error', hidden: '' });
    const waiting = el('p', { class: 'waiting', hidden: '' });
    const stages = {};
    const list = el('ol', { class: 'stages' });
    for (const s of STAGES) {
      const state = el('span', { class: 'stage-status' });
      const bar = el('progress', { max: '100', value: '0', 'aria-label': `${label(s)} progress` });
      const detail = el('span', { class: 'stage-detail' });
      const item = el('li', { 'data-stage': s }, el('span', { class: 'stage-name', text: label(s) }), state, bar, detail);
      stages[s] = { item, state, bar, detail };
      list.append(item);
    }
    const root = el(
      'li',
      { class: 'pipeline', 'data-execution-id': x.id },
      el('h3', {}, 'Execution ', el('code', { text: x.id }), ' ', status),
      overall,
      error,
      waiting,
      list,
    );
    return { root, status, overall, error, waiting, stages };
  }

  function renderExecution(x) {
    const n = x.node;
    n.root.dataset.status = x.status;
    n.status.textContent = label(x.status);
    n.status.className = `badge status-${x.status}`;
    let sum = 0;
    for (const s of STAGES) {
      const st = x.stages[s];
      const view = n.stages[s];
      const pct = st.status === 'completed' ? 100 : Math.max(0, Math.min(100, Math.round(st.progress)));
      sum += pct;
      view.item.dataset.status = st.status;
      view.state.textContent = label(st.status);
      view.bar.value = pct;
      view.bar.textContent = `${pct}%`;
      view.detail.textContent =
        st.records_out !== undefined ? `${st.records_in} in, ${st.records_out} out` : st.status === 'running' ? `${pct}%` : '';
    }
    n.overall.value = x.status === 'completed' ? 100 : Math.round(sum / STAGES.length);
    n.error.hidden = !x.error;
    n.error.textContent = x.error ? String(x.error) : '';
    // The stage it is at, when nothing live serves it: why it does not move.
    const next = STAGES.find((s) => x.stages[s].status !== 'completed');
    const waitingFor = !TERMINAL.has(x.status) && next && unserved.has(`stage_${next}`) ? `stage_${next}` : '';
    n.root.dataset.waitingFor = waitingFor;
    n.waiting.hidden = !waitingFor;
    n.waiting.textContent = waitingFor ? `Waiting: no live worker or agent serves ${waitingFor}` : '';
    $('#pipelines-empty').hidden = executions.size > 0;
  }

  function setExecutionStatus(x, status) {
    if (!status || (TERMINAL.has(x.status) && !TERMINAL.has(status))) return;
    x.status = status;
  }

  function setStage(x, name, status, progress) {
    const st = x.stages[name];
    if (!st) return;
    if (status && (RANK[status] ?? 0) >= (RANK[st.status] ?? 0)) st.status = status;
    if (typeof progress === 'number' && progress > st.progress) st.progress = progress;
    if (st.status === 'running' && x.status === 'pending') x.status = 'running';
  }

  function onPipelineEvent(ev) {
    const d = ev.data || {};
    if (ev.type === 'snapshot') {
      if (!d || !d.execution_id) return;
      const x = execution(d.execution_id);
      setExecutionStatus(x, d.status);
      if (d.error) x.error = d.error;
      for (const s of d.stages || []) setStage(x, s.stage, s.status, s.progress);
      renderExecution(x);
      return;
    }
    const id = d.execution_id;
    if (!id) return;
    const x = execution(id);
    switch (ev.type) {
      case 'stage.started':
        setStage(x, d.stage, 'running');
        if (d.shards) x.stages[d.stage] && (x.stages[d.stage].shards = d.shards);
        break;
      case 'stage.completed':
        setStage(x, d.stage, 'completed', 100);
        if (x.stages[d.stage]) Object.assign(x.stages[d.stage], { records_in: d.records_in, records_out: d.records_out });
        announce(`Execution ${id.slice(-6)}: ${label(d.stage)} completed`);
        break;
      case 'pipeline.completed':
        setExecutionStatus(x, 'completed');
        announce(`Execution ${id.slice(-6)} completed`);
        break;
      case 'pipeline.failed':
        setExecutionStatus(x, 'failed');
        x.error = d.error || d.message || 'failed';
        for (const s of STAGES) if (x.stages[s].status === 'running') x.stages[s].status = 'failed';
        announce(`Execution ${id.slice(-6)} failed`);
        break;
      case 'pipeline.cancelled':
        setExecutionStatus(x, 'cancelled');
        announce(`Execution ${id.slice(-6)} cancelled`);
        break;
      default:
        return;
    }
    renderExecution(x);
    trimExecutions();
  }

  // A shard's progress, from the task channel: a stage's progress is the mean over its shards.
  function onShardProgress(d) {
    const x = execution(d.execution_id);
    const st = x.stages[d.stage];
    if (!st || st.status === 'completed') return;
    const pct = Number(d.progress ?? (d.records_total ? (100 * d.records_done) / d.records_total : 0));
    st.shardProgress.set(d.task_id, pct);
    const shards = Math.max(st.shards, st.shardProgress.size, 1);
    let sum = 0;
    for (const v of st.shardProgress.values()) sum += v;
    setStage(x, d.stage, 'running', sum / shards);
    renderExecution(x);
  }

  function onTaskEvent(ev) {
    const d = ev.data || {};
    if (ev.type === 'snapshot') return;
    if (ev.type === 'task.progress') {
      if (d.execution_id && d.stage) onShardProgress(d);
      return;
    }
    if (ev.type.startsWith('task.')) {
      if (ev.type === 'task.started' && d.execution_id && d.stage) {
        const x = execution(d.execution_id);
        setStage(x, d.stage, 'running');
        renderExecution(x);
      }
      refreshQueues();
    }
  }

  async function loadRunningExecutions() {
    try {
      const r = await api('GET', '/tasks?status=running&limit=1000');
      for (const t of r.data || []) if (t.execution_id) execution(t.execution_id);
    } catch {
      // Live events still show every execution that moves from here on.
    }
  }

  // ---- alerts

  function onSystemEvent(ev) {
    if (ev.type !== 'system.alert') return;
    const d = ev.data && typeof ev.data === 'object' ? ev.data : { message: String(ev.data ?? '') };
    const state = d.state || 'raised';
    const severity = d.severity || 'warning';
    const name = d.alert || d.name || 'alert';
    const capability = d.subject && d.subject.capability;
    if (name === 'queue_unserved' && capability) {
      if (state === 'cleared') unserved.delete(capability);
      else unserved.add(capability);
      for (const x of executions.values()) renderExecution(x);
    }
    const item = el(
      'li',
      { class: `alert state-${state}`, 'data-alert': name, 'data-state': state },
      el('time', { datetime: ev.ts || '', text: clock(ev.ts) }),
      el('span', { class: `badge severity-${severity}`, text: label(severity) }),
      el('strong', { text: label(name) }),
      el('span', { class: 'alert-state', text: state }),
      el('span', { class: 'alert-message', text: d.message || '' }),
    );
    const list = $('#alerts');
    list.prepend(item);
    while (list.children.length > KEEP_ALERTS) list.lastElementChild.remove();
    $('#alerts-empty').hidden = true;
  }

  // Alerts raised before the page opened: the live channel only brings changes.
  async function loadAlerts() {
    try {
      const r = await api('GET', '/system/health');
      for (const a of (r.data && r.data.alerts) || []) {
        onSystemEvent({ type: 'system.alert', ts: a.raised_at, data: { ...a, state: 'raised' } });
      }
    } catch {
      // The live channel still shows every alert raised from here on.
    }
  }

  // ---- sign in and out

  let pipelineChannel = null;

  const noteIn = (selector) => (text) => {
    $(selector).textContent = text;
  };

  function start() {
    $('#login').hidden = true;
    $('#board').hidden = false;
    $('#account').hidden = false;
    $('#whoami').textContent = auth.username ? `Signed in as ${auth.username}` : '';
    loadQueues();
    loadAgents();
    loadRunningExecutions();
    loadAlerts();
    loadSchedules();

    pipelineChannel = new Channel('pipelines', '/ws/pipeline/updates', {
      open: (c) => {
        // Everything on the channel (and, after a drop, what was missed), then each unfinished
        // execution's snapshot.
        c.subscribe();
        for (const x of executions.values()) {
          x.asked = false;
          if (!TERMINAL.has(x.status)) askSnapshot(x);
        }
      },
      lagged: (c) => c.subscribe(),
      event: onPipelineEvent,
      note: noteIn('#pipelines-note'),
    });
    const tasks = new Channel('tasks', '/ws/tasks/progress', {
      // After a drop the counts are re-read rather than replayed.
      open: () => refreshQueues(),
      lagged: () => refreshQueues(),
      event: onTaskEvent,
      note: noteIn('#queues-note'),
    });
    const agentsChannel = new Channel('agents', '/ws/agents/status', {
      // Each connection starts with the full list: nothing to replay.
      event: onAgentEvent,
      note: noteIn('#agents-note'),
    });
    const system = new Channel('alerts', '/ws/system/events', {
      open: (c) => c.subscribe({ criteria: { types: ['system.alert'] } }),
      lagged: (c) => c.subscribe({ criteria: { types: ['system.alert'] } }),
      event: onSystemEvent,
      note: noteIn('#alerts-note'),
    });
    channels.push(pipelineChannel, tasks, agentsChannel, system);
    showConnection();
    for (const c of channels) c.open();
  }

  function signOut(message) {
    const was = auth;
    auth = null;
    sessionStorage.removeItem(STORE_KEY);
    for (const c of channels.splice(0)) c.close();
    clearTimeout(queueTimer);
    queueTimer = null;
    clearTimeout(scheduleTimer);
    scheduleTimer = null;
    pipelineChannel = null;
    executions.clear();
    agents.clear();
    $('#pipelines').replaceChildren();
    $('#alerts').replaceChildren();
    unserved.clear();
    for (const note of document.querySelectorAll('.note[role="status"]')) note.textContent = '';
    $('#queues tbody').replaceChildren();
    $('#agents tbody').replaceChildren();
    $('#schedules tbody').replaceChildren();
    $('#schedules-empty').hidden = false;
    $('#pipelines-empty').hidden = false;
    $('#alerts-empty').hidden = false;
    $('#board').hidden = true;
    $('#account').hidden = true;
    $('#login').hidden = false;
    $('#login-error').textContent = message || '';
    showConnection();
    $('#username').focus();
    return was;
  }

  async function onLogin(e) {
    e.preventDefault();
    const username = $('#username').value.trim();
    const password = $('#password').value;
    const error = $('#login-error');
    if (!username || !password) {
      error.textContent = 'Enter your username and password.';
      (!username ? $('#username') : $('#password')).focus();
      return;
    }
    const button = $('#login-submit');
    button.disabled = true;
    error.textContent = '';
    try {
      const r = await request('POST', '/auth/login', { username, password });
      keep(r.data, username);
      $('#password').value = '';
      start();
      $('#queues-title').focus();
    } catch (err) {
      error.textContent = err.message;
      $('#password').select();
    } finally {
      button.disabled = false;
    }
  }

  async function onLogout() {
    const was = signOut();
    if (was) {
      // Best effort: revokes the tokens server-side; the tab has already forgotten them.
      request('POST', '/auth/logout', { refresh_token: was.refresh }, was.access).catch(() => {});
    }
  }

  $('#login-form').addEventListener('submit', onLogin);
  $('#logout').addEventListener('click', onLogout);
  if (auth && auth.access) start();
  else $('#username').focus();
})();
