// The Trellis web console: the REST API seen through a browser, for a person holding a token.
// It builds every element with the DOM (text only through text nodes), speaks only the public API, keeps the
// token in this tab's sessionStorage, and follows the event stream so what it shows changes as the network does.

const session = {
  token: sessionStorage.getItem('trellis.token'),
  admin: false,
  events: [],
  lastEventID: null,
  follower: null,
};

/** An API answer that was not 2xx: the controller's message and the field it names. */
class APIError extends Error {
  constructor(status, body) {
    super(body.error || `the controller answered ${status}`);
    this.status = status;
    this.field = body.field;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 204) return null;
  const text = await response.text();
  let parsed;
  try { parsed = text ? JSON.parse(text) : {}; } catch { parsed = { error: text.trim() }; }
  if (!response.ok) {
    if (response.status === 401 && path !== '/api/v1/enterprises') logOut('The controller no longer accepts this token.');
    throw new APIError(response.status, parsed);
  }
  return parsed;
}

/** The API path of an object: each part of its path encoded on its own. */
function objectURL(collection, path) {
  return `/api/v1/${collection}/${path.split('/').map(encodeURIComponent).join('/')}`;
}

// ---- DOM helpers ----

function h(tag, attributes = {}, ...children) {
  return fill(document.createElement(tag), attributes, children);
}

function s(tag, attributes = {}, ...children) {
  return fill(document.createElementNS('http://www.w3.org/2000/svg', tag), attributes, children);
}

function fill(element, attributes, children) {
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function toast(message, isError = true) {
  const box = document.getElementById('toast');
  box.textContent = message;
  box.className = isError ? 'error' : 'info';
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 8000);
}

/** Runs an action the person asked for; its failure is shown with the field the controller named. */
async function attempt(action, done) {
  try {
    await action();
    if (done) toast(done, false);
    await refresh();
  } catch (error) {
    toast(error.field ? `${error.message} (field: ${error.field})` : error.message);
  }
}

const formatBytes = (n) => {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = n, unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
};
const formatRate = (rate) => {
  if (!rate) return 'unlimited';
  const units = ['bit', 'kbit', 'Mbit', 'Gbit'];
  let value = rate.bitsPerSecond, unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${Number(value.toFixed(1))} ${units[unit]}/s`;
};
const formatPorts = (ports) => (ports && ports.length ? ` port ${ports.join(',')}` : '');

/** A profile rule as the CLI writes it: `allow tcp ingress from 10.0.0.0/8 port 80`. */
function aclRuleText(rule) {
  const direction = rule.direction || 'ingress';
  let text = `${rule.action} ${rule.protocol || 'any'} ${direction}`;
  if (rule.remote) text += ` ${direction === 'ingress' ? 'from' : 'to'} ${rule.remote}`;
  return text + formatPorts(rule.ports);
}

/** A policy rule as the CLI writes it: `allow tcp from acme/app/web to acme/app/db port 5432`. */
function policyRuleText(rule) {
  return `${rule.action} ${rule.protocol || 'any'} from ${rule.from || 'any'} to ${rule.to || 'any'}${formatPorts(rule.ports)}`;
}

function addressNumber(text) {
  const parts = text.split('.').map(Number);
  return ((parts[0] << 24) >>> 0) + (parts[1] << 16) + (parts[2] << 8) + parts[3];
}

function cidrContains(cidr, address) {
  const [base, length] = cidr.split('/');
  if (length === undefined || !address) return false;
  const bits = Number(length);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return ((addressNumber(base) & mask) >>> 0) === ((addressNumber(address) & mask) >>> 0);
}

/** Whether a policy term (`any`, a zone or subnet path, or a CIDR) covers an endpoint. */
function termCovers(term, endpoint) {
  if (term === 'any') return true;
  if (term.includes('/') && /^[0-9.]+\/\d+$/.test(term)) return cidrContains(term, endpoint.ip);
  return endpoint.subnet === term || endpoint.subnet.startsWith(`${term}/`);
}

// ---- data ----

const model = { loaded: false };

/** Reads everything the views draw from, in parallel; a tenant's token sees only its own enterprise. */
async function load() {
  const names = ['enterprises', 'domains', 'zones', 'subnets', 'endpoints', 'policies', 'profiles'];
  const lists = await Promise.all(names.map((name) => api('GET', `/api/v1/${name}`)));
  names.forEach((name, index) => { model[name] = lists[index].items; });
  model.revision = lists.reduce((highest, list) => Math.max(highest, list.revision || 0), 0);
  model.hosts = session.admin ? (await api('GET', '/api/v1/hosts')).items : [];
  model.loaded = true;
}

// ---- live updates ----

let currentView = null;
const reloading = { now: false, again: false };

/** Reloads the data and redraws the view's content at once, and changes that come meanwhile in one more
 * reload 200 ms after it: a burst of events costs two reloads, not one per event. */
function scheduleRefresh() {
  if (reloading.now) { reloading.again = true; return; }
  reloading.now = true;
  refresh().finally(() => {
    reloading.now = false;
    if (reloading.again) { reloading.again = false; setTimeout(scheduleRefresh, 200); }
  });
}

async function refresh() {
  if (!session.token) return;
  try {
    await load();
    if (currentView && currentView.update) currentView.update();
  } catch (error) {
    if (!(error instanceof APIError && error.status === 401)) toast(`Could not reload: ${error.message}`);
  }
}

/** Follows `/api/v1/events?follow=1`, resuming after the last event seen when the stream ends. */
async function follow() {
  const controller = new AbortController();
  session.follower = controller;
  const live = document.getElementById('live');
  while (!controller.signal.aborted) {
    try {
      const since = session.lastEventID === null ? '' : `&since=${session.lastEventID}`;
      const response = await fetch(`/api/v1/events?follow=1${since}`, {
        headers: { Authorization: `Bearer ${session.token}` }, signal: controller.signal,
      });
      if (!response.ok) throw new Error(`events answered ${response.status}`);
      live.hidden = false;
      live.className = 'live';
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffered = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += decoder.decode(value, { stream: true });
        const lines = buffered.split('\n');
        buffered = lines.pop();
        for (const line of lines) if (line.trim()) receive(JSON.parse(line));
      }
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    live.className = 'live stalled';
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function receive(event) {
  session.lastEventID = Math.max(session.lastEventID ?? 0, event.id);
  session.events.push(event);
  if (session.events.length > 2000) session.events.splice(0, session.events.length - 2000);
  if (currentView && currentView.onEvent) currentView.onEvent(event);
  scheduleRefresh();
}

// ---- log in and out ----

function showLogin(message) {
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('live').hidden = true;
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'current-password', required: true,
    placeholder: 'token', 'aria-label': 'token' });
  const error = h('p', { class: 'error', id: 'login-error' }, message || '');
  const form = h('form', { id: 'login', class: 'login', onsubmit: async (event) => {
    event.preventDefault();
    session.token = input.value.trim();
    try {
      await api('GET', '/api/v1/enterprises');
    } catch (failure) {
      session.token = null;
      error.textContent = failure.status === 401 ? 'The controller does not accept this token.' : failure.message;
      return;
    }
    sessionStorage.setItem('trellis.token', session.token);
    await start();
  } },
  h('h1', {}, 'Trellis'),
  h('p', {}, 'Log in with your token (trellis user token, or the admin token).'),
  input, h('button', { type: 'submit' }, 'Log in'), error);
  document.getElementById('main').replaceChildren(form);
  input.focus();
}

function logOut(message) {
  if (session.follower) session.follower.abort();
  sessionStorage.removeItem('trellis.token');
  Object.assign(session, { token: null, admin: false, events: [], lastEventID: null, follower: null });
  currentView = null;
  showLogin(message);
}

async function start() {
  try {
    await api('GET', '/api/v1/hosts');
    session.admin = true;
  } catch (error) {
    if (error.status === 401) { logOut('The controller does not accept this token.'); return; }
    session.admin = false;
  }
  document.getElementById('nav').hidden = false;
  document.getElementById('nav-hosts').hidden = !session.admin;
  document.getElementById('logout').hidden = false;
  const recent = await api('GET', '/api/v1/events?limit=200');
  session.events = recent.items;
  session.lastEventID = recent.items.length ? recent.items[recent.items.length - 1].id : 0;
  await load();
  follow();
  route();
}

// ---- views ----

/** A view: `controls` are drawn once per visit, `update` redraws the content from the model. */
function view(controls, update, extra = {}) {
  const content = h('div', { class: 'content' });
  document.getElementById('main').replaceChildren(...controls, content);
  currentView = { update: () => {
    // An input kept across redraws (see `kept`) keeps what is typed in it, and its focus.
    const focused = document.activeElement;
    content.replaceChildren();
    fill(content, {}, update());
    if (focused && focused !== document.activeElement && focused.isConnected) focused.focus();
  }, ...extra };
  currentView.update();
  return currentView;
}

/** The element made once for a key and reused by every redraw of the view. */
function kept(store, key, make) {
  if (!store.has(key)) store.set(key, make());
  return store.get(key);
}

function endpointChip(endpoint) {
  return h('a', { class: `endpoint ${endpoint.state}`, href: `#/endpoint/${endpoint.id}`, 'data-endpoint': endpoint.path,
    title: `${endpoint.path} · ${endpoint.mac} · ${endpoint.state}` },
  h('span', { class: 'kind' }, endpoint.kind === 'vm' ? 'VM' : '▣'), ` ${endpoint.name} `, h('code', {}, endpoint.ip));
}

function topologyView() {
  const search = h('input', { id: 'search', type: 'search', placeholder: 'find an endpoint: name, address, MAC or host',
    value: topologyView.query || '', oninput: () => { topologyView.query = search.value; currentView.update(); } });
  const closed = topologyView.closed || (topologyView.closed = new Set());
  view([h('div', { class: 'toolbar' }, search)], () => {
    const query = (topologyView.query || '').trim().toLowerCase();
    const matches = (endpoint) => !query || [endpoint.name, endpoint.ip, endpoint.mac, endpoint.host || '', endpoint.path]
      .some((text) => text.toLowerCase().includes(query));
    if (!model.enterprises.length) {
      return [h('p', { class: 'empty' }, 'No enterprise yet: create one with trellis enterprise create NAME.')];
    }
    return model.enterprises.map((enterprise) => h('section', { class: 'enterprise', 'data-enterprise': enterprise.name },
      h('h2', {}, enterprise.name, enterprise.description ? h('small', {}, ` ${enterprise.description}`) : null),
      model.domains.filter((domain) => domain.enterprise === enterprise.name).map((domain) => {
        const endpoints = model.endpoints.filter((endpoint) => endpoint.domain === domain.path);
        const details = h('details', { class: 'domain', open: !closed.has(domain.path), 'data-domain': domain.path,
          ontoggle: () => { if (details.open) closed.delete(domain.path); else closed.add(domain.path); } },
        h('summary', {}, `${domain.name} `, h('small', {}, `${endpoints.length} endpoints`)),
        policyGraph(domain),
        h('div', { class: 'zones' }, model.zones.filter((zone) => zone.domain === domain.path).map((zone) => h('div', { class: 'zone' },
          h('h4', {}, `zone ${zone.name}`),
          model.subnets.filter((subnet) => subnet.zone === zone.path).map((subnet) => subnetCard(subnet, matches))))));
        return details;
      })));
  });
}

function subnetCard(subnet, matches) {
  const endpoints = model.endpoints.filter((endpoint) => endpoint.subnet === subnet.path && matches(endpoint));
  const byHost = new Map();
  for (const endpoint of endpoints) {
    const host = endpoint.host || '(not placed)';
    if (!byHost.has(host)) byHost.set(host, []);
    byHost.get(host).push(endpoint);
  }
  return h('div', { class: 'subnet', 'data-subnet': subnet.path },
    h('h5', {}, subnet.name, ' ', h('code', {}, subnet.cidr), h('small', {}, ` VNI ${subnet.vni}${subnet.dhcp ? ' · DHCP' : ''}`)),
    byHost.size ? [...byHost.entries()].sort().map(([host, list]) => h('div', { class: 'host' },
      h('span', { class: 'hostname' }, host), list.map(endpointChip))) : h('p', { class: 'empty' }, 'no endpoint'));
}

/** The domain's policy rules drawn as arrows between the subnets, zones and CIDRs they name. */
function policyGraph(domain) {
  const rules = model.policies.filter((policy) => policy.domain === domain.path)
    .flatMap((policy) => policy.rules.map((rule, index) => ({ rule, policy, index })));
  const subnets = model.subnets.filter((subnet) => subnet.domain === domain.path).map((subnet) => subnet.path);
  const terms = [...new Set([...subnets, ...rules.flatMap(({ rule }) => [rule.from || 'any', rule.to || 'any'])])];
  if (!rules.length) return h('p', { class: 'empty' }, 'No policy: its subnets reach each other only within a subnet.');
  const width = 640, height = Math.max(220, 60 * Math.ceil(terms.length / 2) + 60);
  const at = new Map(terms.map((term, index) => {
    const angle = (2 * Math.PI * index) / terms.length - Math.PI / 2;
    return [term, { x: width / 2 + (width / 2 - 110) * Math.cos(angle), y: height / 2 + (height / 2 - 35) * Math.sin(angle) }];
  }));
  const label = (term) => (term.startsWith(`${domain.path}/`) ? term.slice(domain.path.length + 1) : term);
  const arrows = rules.map(({ rule, policy, index }, order) => {
    const from = at.get(rule.from || 'any'), to = at.get(rule.to || 'any');
    const text = `${rule.protocol}${formatPorts(rule.ports).replace(' port ', '/')}`;
    const title = s('title', {}, `${policy.name} #${index + 1}: ${policyRuleText(rule)}`);
    if (from === to) {
      const d = `M ${from.x - 12} ${from.y - 14} C ${from.x - 50} ${from.y - 70}, `
        + `${from.x + 50} ${from.y - 70}, ${from.x + 12} ${from.y - 14}`;
      return s('g', { class: `rule ${rule.action}` }, title, s('path', { d, 'marker-end': `url(#head-${rule.action})` }),
        s('text', { x: from.x, y: from.y - 58 - 12 * (order % 2), 'text-anchor': 'middle' }, text));
    }
    const bend = 18 * ((order % 3) - 1);
    const mx = (from.x + to.x) / 2 - bend * Math.sign(to.y - from.y || 1), my = (from.y + to.y) / 2 + bend;
    const shorten = (p, q) => {
      const dx = q.x - p.x, dy = q.y - p.y, length = Math.hypot(dx, dy) || 1;
      return { x: p.x + (dx * 22) / length, y: p.y + (dy * 22) / length };
    };
    const start = shorten(from, { x: mx, y: my }), end = shorten(to, { x: mx, y: my });
    return s('g', { class: `rule ${rule.action}` }, title,
      s('path', { d: `M ${start.x} ${start.y} Q ${mx} ${my} ${end.x} ${end.y}`, 'marker-end': `url(#head-${rule.action})` }),
      s('text', { x: mx, y: my - 4, 'text-anchor': 'middle' }, text));
  });
  const nodes = terms.map((term) => {
    const { x, y } = at.get(term);
    const kind = subnets.includes(term) ? 'subnet' : /^[0-9.]+\/\d+$/.test(term) || term === 'any' ? 'outside' : 'zone';
    return s('g', { class: `node ${kind}` }, s('rect', { x: x - 95, y: y - 16, width: 190, height: 32, rx: 6 }),
      s('text', { x, y: y + 5, 'text-anchor': 'middle' }, label(term)));
  });
  const marker = (action) => s('marker', { id: `head-${action}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7,
    markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: `head ${action}` }));
  return s('svg', { class: 'policy-graph', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `policy rules of ${domain.path}` }, s('defs', {}, marker('allow'), marker('deny')), arrows, nodes);
}

/** Whether a policy rule names the endpoint as the source (out), the destination (in), or both. */
function direction(rule, endpoint) {
  const out = termCovers(rule.from || 'any', endpoint), into = termCovers(rule.to || 'any', endpoint);
  return out && into ? 'in+out' : out ? 'out' : 'in';
}

function endpointView(id) {
  const samples = [];
  const traffic = h('div', { class: 'traffic' }, h('p', { class: 'empty' }, 'waiting for counters…'));
  const flows = h('div', { class: 'flows' });
  let stopped = false;
  const find = () => model.endpoints.find((endpoint) => String(endpoint.id) === id);
  async function poll() {
    if (stopped) return;
    const endpoint = find();
    if (endpoint) {
      try {
        const stats = await api('GET', `/api/v1/endpoints/${endpoint.id}/stats`);
        const last = samples[samples.length - 1];
        if (!last || last.at !== stats.collectedAt) samples.push({ at: stats.collectedAt, sent: stats.sent, received: stats.received });
        if (samples.length > 60) samples.shift();
        traffic.replaceChildren(trafficChart(samples, stats));
      } catch (error) {
        traffic.replaceChildren(h('p', { class: 'empty' }, error.status === 404 ? 'No counters reported yet.' : error.message));
      }
      try {
        const list = await api('GET', `/api/v1/flows?subnet=${encodeURIComponent(endpoint.subnet)}`);
        flows.replaceChildren(flowTable(list.items.filter((flow) => [flow.source, flow.destination, flow.translatedDestination]
          .includes(endpoint.ip))));
      } catch (error) {
        flows.replaceChildren(h('p', { class: 'empty' }, error.message));
      }
    }
    setTimeout(poll, 2000);
  }
  view([], () => {
    const endpoint = find();
    if (!endpoint) return [h('p', { class: 'empty' }, `No endpoint ${id} (deleted, or not yours).`)];
    const profile = model.profiles.find((candidate) => candidate.path === endpoint.profile);
    const picker = h('select', { id: 'profile', 'aria-label': 'profile' }, h('option', { value: '' }, '(none)'),
      model.profiles.filter((candidate) => candidate.enterprise === endpoint.enterprise)
        .map((candidate) => h('option', { value: candidate.path, selected: candidate.path === endpoint.profile }, candidate.name)));
    picker.addEventListener('change', () => attempt(() => api('PATCH', `/api/v1/endpoints/${endpoint.id}`, { profile: picker.value }),
      picker.value ? `${endpoint.name} now uses ${picker.value}` : `${endpoint.name} has no profile now`));
    const applicable = model.policies.filter((policy) => policy.domain === endpoint.domain).flatMap((policy) => policy.rules
      .map((rule, index) => ({ rule, policy, index }))
      .filter(({ rule }) => termCovers(rule.from || 'any', endpoint) || termCovers(rule.to || 'any', endpoint)));
    const facts = [['path', endpoint.path], ['address', endpoint.ip], ['MAC', endpoint.mac], ['host', endpoint.host || '(not placed)'],
      ['kind', endpoint.kind], ['state', endpoint.state], ['interface', endpoint.interface], ['hostname', endpoint.hostname],
      ['owner', endpoint.owner], ['floating IP', endpoint.floatingIP],
      ['egress limit', endpoint.egressRate && formatRate(endpoint.egressRate)],
      ['ingress limit', endpoint.ingressRate && formatRate(endpoint.ingressRate)], ['created', endpoint.createdAt],
      ...Object.entries(endpoint.externalIds || {}).sort().map(([key, value]) => [`external id ${key}`, value])]
      .filter(([, value]) => value);
    return [
      h('h2', {}, endpoint.name, ' ', h('span', { class: `state ${endpoint.state}` }, endpoint.state)),
      h('table', { class: 'facts' }, facts.map(([key, value]) => h('tr', {}, h('th', {}, key), h('td', {}, String(value))))),
      h('p', {}, h('a', { href: `#/explain?from=${encodeURIComponent(endpoint.path)}` }, 'Explain a flow from this endpoint')),
      h('h3', {}, 'Profile'), h('label', {}, 'profile ', picker),
      profile ? h('div', { class: 'profile' },
        h('p', {}, `egress ${formatRate(profile.egressRate)} · ingress ${formatRate(profile.ingressRate)}`),
        profile.rules.length ? h('ol', { class: 'rules' }, profile.rules.map((rule) => h('li', { class: rule.action }, aclRuleText(rule))))
          : h('p', { class: 'empty' }, 'no rules: the port takes what the policies allow')) : null,
      h('h3', {}, 'Policy rules that name it'),
      applicable.length ? h('ol', { class: 'rules' }, applicable.map(({ rule, policy, index }) => h('li', { class: rule.action },
        h('span', { class: 'direction' }, direction(rule, endpoint)), ' ',
        h('a', { href: '#/policies' }, `${policy.name} #${index + 1}`), ` ${policyRuleText(rule)}`)))
        : h('p', { class: 'empty' }, 'none: only its own subnet reaches it'),
      h('h3', {}, 'Traffic'), traffic,
      h('h3', {}, 'Flows'), flows,
    ];
  }, { leave: () => { stopped = true; } });
  poll();
}

/** Bytes per second sent and received between consecutive reports, as two lines over the last samples. */
function trafficChart(samples, stats) {
  const rates = samples.slice(1).map((sample, index) => {
    const before = samples[index];
    const seconds = Math.max(0.001, (Date.parse(sample.at) - Date.parse(before.at)) / 1000);
    const per = (side, unit) => (sample[side][unit] - before[side][unit]) / seconds;
    return { bytes: { sent: per('sent', 'bytes'), received: per('received', 'bytes') },
      packets: { sent: per('sent', 'packets'), received: per('received', 'packets') } };
  });
  return h('div', {},
    h('p', { class: 'totals' }, `sent ${stats.sent.packets} packets, ${formatBytes(stats.sent.bytes)} · `
      + `received ${stats.received.packets} packets, ${formatBytes(stats.received.bytes)} · `
      + `reported by ${stats.host} at ${stats.collectedAt}`),
    rates.length ? h('div', { class: 'charts' },
      chart(rates.map((rate) => rate.bytes), (value) => `${formatBytes(value)}/s`, 'bytes per second'),
      chart(rates.map((rate) => rate.packets), (value) => `${Math.round(value)} packets/s`, 'packets per second'),
      h('p', { class: 'legend' }, h('span', { class: 'sent' }, '— sent'), ' ', h('span', { class: 'received' }, '— received')))
      : h('p', { class: 'empty' }, 'the chart starts with the next report'));
}

/** Sent and received rates over the last reports as two lines, scaled to the highest. */
function chart(rates, label, title) {
  const width = 480, height = 120;
  const highest = Math.max(1, ...rates.flatMap((rate) => [rate.sent, rate.received]));
  // One rate is drawn as a level line across the chart.
  const drawn = rates.length === 1 ? [rates[0], rates[0]] : rates;
  const point = (rate, index, key) => `${(index / (drawn.length - 1)) * width},${height - (rate[key] / highest) * height}`;
  const line = (key) => drawn.map((rate, index) => point(rate, index, key)).join(' ');
  return s('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title },
    s('polyline', { class: 'sent', points: line('sent') }), s('polyline', { class: 'received', points: line('received') }),
    s('text', { x: 4, y: 14 }, `${title}, up to ${label(highest)}`));
}

function stepText(step) {
  if (!step) return '—';
  return [step.stage, step.object, step.ruleNumber ? `#${step.ruleNumber}` : null, step.rule].filter(Boolean).join(' ');
}

function flowTable(flows) {
  if (!flows.length) return h('p', { class: 'empty' }, 'No current flow.');
  const end = (address, port) => (port ? `${address}:${port}` : address);
  return h('table', { class: 'list' }, h('tr', {}, ['protocol', 'from', 'to', 'state', 'packets', 'bytes', 'decided by']
    .map((title) => h('th', {}, title))),
  flows.map((flow) => h('tr', {}, h('td', {}, flow.protocol), h('td', {}, end(flow.source, flow.sourcePort)),
    h('td', {}, end(flow.destination, flow.destinationPort), flow.translatedDestination ? ` → ${flow.translatedDestination}` : ''),
    h('td', {}, flow.state || ''), h('td', {}, `${flow.original.packets}/${flow.reply.packets}`),
    h('td', {}, `${formatBytes(flow.original.bytes)}/${formatBytes(flow.reply.bytes)}`), h('td', {}, stepText(flow.decidedBy)))));
}

function explainView(query) {
  const field = (name, value, placeholder) => h('input', { name, id: `explain-${name}`, value: value || '', placeholder,
    required: name !== 'port' });
  const from = field('from', query.get('from'), 'endpoint path, address or CIDR');
  const to = field('to', query.get('to'), 'endpoint path, address or CIDR');
  const protocol = h('select', { name: 'protocol', id: 'explain-protocol' },
    ['tcp', 'udp', 'icmp'].map((name) => h('option', { selected: name === (query.get('protocol') || 'tcp') }, name)));
  const port = field('port', query.get('port'), 'port');
  const answer = h('div', { id: 'explanation' });
  const parameters = () => {
    const chosen = new URLSearchParams({ from: from.value.trim(), to: to.value.trim(), protocol: protocol.value });
    if (protocol.value !== 'icmp') chosen.set('port', port.value.trim());
    history.replaceState(null, '', `#/explain?${chosen}`);
    return chosen;
  };
  const verify = h('button', { type: 'button', id: 'verify', title: 'the agent of the source\'s host sends one real packet, traced',
    onclick: () => { if (form.reportValidity()) explain(parameters(), answer, true); } }, 'Explain and verify in the kernel');
  const form = h('form', { class: 'explain', onsubmit: (event) => {
    event.preventDefault();
    explain(parameters(), answer, false);
  } }, h('label', {}, 'from ', from), h('label', {}, 'to ', to), h('label', {}, 'protocol ', protocol), h('label', {}, 'port ', port),
  h('button', { type: 'submit' }, 'Explain'), verify);
  view([h('h2', {}, 'Which rule decides a new flow'), form, answer], () => []);
  if (query.get('from') && query.get('to')) explain(query, answer, false);
}

/** The computed decision path; with `verify`, also one real packet sent by the source's agent and what the kernel did. */
async function explain(parameters, answer, verify) {
  try {
    let result = null;
    let verified = null;
    if (verify) {
      answer.replaceChildren(h('p', { class: 'empty' }, 'sending a traced packet from the source\'s port…'));
      const port = parameters.get('port');
      verified = await api('POST', '/api/v1/explain/verify', { from: parameters.get('from'), to: parameters.get('to'),
        protocol: parameters.get('protocol'), port: port ? Number(port) : undefined });
      result = verified.explanation;
    } else {
      result = await api('GET', `/api/v1/explain?${parameters}`);
    }
    const end = (side) => [side.endpoint || side.address, side.subnet ? `in ${side.subnet}` : null,
      side.profile ? `profile ${side.profile}` : null, side.floatingIP ? `floating IP ${side.floatingIP}` : null]
      .filter(Boolean).join(' · ');
    const words = (verdict) => (verdict === 'allow' ? 'allowed' : 'dropped');
    answer.replaceChildren(h('p', { class: `verdict ${result.verdict}`, id: 'verdict' }, words(result.verdict)),
      h('p', {}, `from ${end(result.from)}`), h('p', {}, `to ${end(result.to)}`),
      h('table', { class: 'list steps' }, h('tr', {}, ['stage', 'outcome', 'object', 'rule', 'detail'].map((title) => h('th', {}, title))),
        result.steps.map((step) => h('tr', { class: step.outcome }, h('td', {}, step.stage), h('td', {}, step.outcome),
          h('td', {}, step.object || ''), h('td', {}, step.ruleNumber ? `#${step.ruleNumber} ${step.rule || ''}` : step.rule || ''),
          h('td', {}, step.detail || '')))),
      verified ? kernelVerdict(verified) : null);
  } catch (error) {
    answer.replaceChildren(h('p', { class: 'error' }, error.field ? `${error.field}: ${error.message}` : error.message));
  }
}

/** What the kernel did with the traced packet, and whether that is the computed verdict (loudly when it is not). */
function kernelVerdict(verified) {
  const kernel = verified.kernel;
  const words = (verdict) => (verdict === 'allow' ? 'allowed' : 'dropped');
  const answered = kernel.answered === undefined || kernel.answered === null ? '' : (kernel.answered ? ', answered' : ', no answer');
  return h('section', { id: 'kernel' }, h('h3', {}, 'In the kernel (one traced packet)'),
    verified.agrees
      ? h('p', { class: 'agreement agrees', id: 'agreement' }, `The kernel agrees: ${words(kernel.verdict)}${answered}.`)
      : h('p', { class: 'agreement disagrees', id: 'agreement' },
        `THE KERNEL DISAGREES: computed ${words(verified.explanation.verdict)}, the kernel ${words(kernel.verdict)} it${answered}.`),
    h('table', { class: 'list steps' }, h('tr', {}, ['chain', 'handle', 'verdict', 'rule'].map((title) => h('th', {}, title))),
      kernel.steps.map((step) => h('tr', { class: step.verdict === 'drop' ? 'drop' : '' },
        h('td', {}, `${step.family} ${step.table} ${step.chain}`), h('td', {}, step.handle ? String(step.handle) : step.kind),
        h('td', {}, step.verdict), h('td', {}, step.rule || '')))));
}

/** A numbered rule list with a button removing each rule and a form adding one in its one-line form; every
 * change sends the whole new list with `put`. */
function ruleEditor(owner, rules, lines, input, put) {
  const without = (index) => lines.filter((_, other) => other !== index);
  return [
    lines.length ? h('ol', { class: 'rules' }, lines.map((line, index) => h('li', { class: rules[index].action }, line, ' ',
      h('button', { class: 'remove', title: 'remove this rule',
        onclick: () => attempt(() => put(without(index)), `rule ${index + 1} removed from ${owner}`) }, '×'))))
      : h('p', { class: 'empty' }, 'no rules'),
    h('form', { class: 'inline', onsubmit: (event) => {
      event.preventDefault();
      attempt(async () => { await put([...lines, input.value.trim()]); input.value = ''; }, `rule added to ${owner}`);
    } }, input, h('button', { type: 'submit' }, 'Add rule')),
  ];
}

function policiesView() {
  const inputs = new Map();
  const domainPicker = h('select', { id: 'policy-domain', 'aria-label': 'domain' });
  const name = h('input', { id: 'policy-name', placeholder: 'name', required: true });
  const firstRule = h('input', { id: 'policy-rule', placeholder: 'allow tcp from ZONE-OR-SUBNET to ZONE-OR-SUBNET port 80', size: 50 });
  const create = h('form', { class: 'inline', onsubmit: (event) => {
    event.preventDefault();
    const body = { domain: domainPicker.value, name: name.value.trim() };
    if (firstRule.value.trim()) body.rules = [firstRule.value.trim()];
    attempt(async () => { await api('POST', '/api/v1/policies', body); name.value = ''; firstRule.value = ''; },
      `policy ${body.domain}/${body.name} created`);
  } }, 'New policy in ', domainPicker, ' ', name, ' ', firstRule, h('button', { type: 'submit' }, 'Create'));
  view([h('h2', {}, 'Network policies'), create], () => {
    const chosen = domainPicker.value;
    domainPicker.replaceChildren(...model.domains.map((domain) => h('option', { selected: domain.path === chosen }, domain.path)));
    if (!model.policies.length) return [h('p', { class: 'empty' }, 'No policy yet: subnets reach only themselves.')];
    return model.policies.map((policy) => {
      const input = kept(inputs, policy.path,
        () => h('input', { placeholder: 'allow tcp from … to … port …', size: 50, 'aria-label': `new rule of ${policy.path}` }));
      const put = (rules) => api('PUT', objectURL('policies', policy.path), { rules, description: policy.description });
      const lines = policy.rules.map(policyRuleText);
      return h('section', { class: 'policy', 'data-policy': policy.path },
        h('h3', {}, policy.path, ' ', h('button', { class: 'danger', onclick: () => {
          if (!confirm(`Delete policy ${policy.path}?`)) return;
          attempt(() => api('DELETE', objectURL('policies', policy.path)), `${policy.path} deleted`);
        } }, 'Delete')),
        ruleEditor(policy.path, policy.rules, lines, input, put));
    });
  });
}

function profilesView() {
  const inputs = new Map();
  view([h('h2', {}, 'Port profiles')], () => {
    if (!model.profiles.length) return [h('p', { class: 'empty' }, 'No profile yet: trellis profile create ENTERPRISE/NAME.')];
    return model.profiles.map((profile) => {
      const users = model.endpoints.filter((endpoint) => endpoint.profile === profile.path);
      const input = kept(inputs, profile.path,
        () => h('input', { placeholder: 'deny tcp port 22', size: 40, 'aria-label': `new rule of ${profile.path}` }));
      const lines = profile.rules.map(aclRuleText);
      const put = (rules) => api('PUT', objectURL('profiles', profile.path), { rules, egressRate: profile.egressRate,
        ingressRate: profile.ingressRate, flowStats: profile.flowStats || false, description: profile.description });
      return h('section', { class: 'profile', 'data-profile': profile.path },
        h('h3', {}, profile.path),
        h('p', {}, `egress ${formatRate(profile.egressRate)} · ingress ${formatRate(profile.ingressRate)}`
          + `${profile.flowStats ? ' · flow statistics' : ''}`),
        ruleEditor(profile.path, profile.rules, lines, input, put),
        h('p', {}, `${users.length} ports: `, users.map(endpointChip)));
    });
  });
}

function hostsView() {
  view([h('h2', {}, 'Hosts')], () => {
    if (!model.hosts.length) return [h('p', { class: 'empty' }, 'No host has joined yet.')];
    return [h('table', { class: 'list', id: 'hosts' }, h('tr', {}, ['host', 'underlay', 'status', 'last heartbeat', 'applied', 'endpoints']
      .map((title) => h('th', {}, title))),
    model.hosts.map((host) => {
      const behind = host.appliedRevision === undefined ? 'nothing applied yet'
        : host.appliedRevision >= model.revision ? `in step (${host.appliedRevision})`
          : `${model.revision - host.appliedRevision} revisions behind`;
      return h('tr', { 'data-host': host.name }, h('td', {}, host.name), h('td', {}, host.underlayIP),
        h('td', { class: `state ${host.status}` }, host.status), h('td', {}, host.lastHeartbeat || 'never'), h('td', {}, behind),
      h('td', {}, String(model.endpoints.filter((endpoint) => endpoint.host === host.name).length)));
    }))];
  });
}

function eventsView() {
  const kinds = ['enterprise', 'domain', 'zone', 'subnet', 'endpoint', 'profile', 'policy', 'host', 'fippool', 'user'];
  const kind = h('select', { id: 'event-kind', 'aria-label': 'kind', onchange: () => currentView.update() },
    h('option', { value: '' }, 'every kind'), kinds.map((name) => h('option', {}, name)));
  const actor = h('input', { id: 'event-actor', placeholder: 'actor', oninput: () => currentView.update() });
  const refusals = h('input', { id: 'event-refusals', type: 'checkbox', onchange: () => currentView.update() });
  const toolbar = h('div', { class: 'toolbar' }, kind, ' ', actor, ' ', h('label', {}, refusals, ' refused attachments only'));
  view([h('h2', {}, 'Events'), toolbar], () => {
    const shown = session.events.filter((event) => (!kind.value || event.kind === kind.value)
      && (!actor.value || (event.actor || '').includes(actor.value)) && (!refusals.checked || event.action === 'refused'))
      .slice(-300).reverse();
    return [h('table', { class: 'list', id: 'events' }, h('tr', {}, ['#', 'time', 'actor', 'action', 'kind', 'path', 'detail']
      .map((title) => h('th', {}, title))),
    shown.map((event) => h('tr', { class: event.action }, h('td', {}, String(event.id)), h('td', {}, event.time),
      h('td', {}, event.actor || ''), h('td', {}, event.action), h('td', {}, event.kind), h('td', {}, event.path),
      h('td', {}, event.action === 'refused' && event.object ? `${event.object.host}: ${event.object.reason}` : ''))))];
  }, { onEvent: () => currentView.update() });
}

function route() {
  if (!session.token) { showLogin(); return; }
  if (currentView && currentView.leave) currentView.leave();
  const [path, query] = location.hash.replace(/^#/, '').split('?');
  const parameters = new URLSearchParams(query || '');
  for (const link of document.querySelectorAll('#nav a')) link.classList.toggle('current', link.getAttribute('href') === `#${path || '/'}`);
  const endpoint = path.match(/^\/endpoint\/(\d+)$/);
  if (endpoint) endpointView(endpoint[1]);
  else if (path === '/policies') policiesView();
  else if (path === '/profiles') profilesView();
  else if (path === '/explain') explainView(parameters);
  else if (path === '/hosts' && session.admin) hostsView();
  else if (path === '/events') eventsView();
  else topologyView();
}

window.addEventListener('hashchange', route);
document.getElementById('logout').addEventListener('click', () => logOut('Logged out.'));
if (session.token) start().catch((error) => logOut(error.message)); else showLogin();
