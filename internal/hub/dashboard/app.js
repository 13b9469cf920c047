// The mimi-hub operator dashboard. It keeps the admin token in this tab's
// sessionStorage, sends it as a bearer token to GET /v1/dashboard every
// POLL_MS (one request at a time) and renders the answer with textContent
// only: nothing from the server is ever parsed as HTML.
'use strict';

const TOKEN_KEY = 'mimi-hub-ops-token';
// NO_TOKEN is stored for a node that runs without a token (loopback only).
const NO_TOKEN = '-';
const POLL_MS = 2000;

let timer = null;

const $ = (id) => document.getElementById(id);

class AuthError extends Error {}

async function fetchDashboard(token) {
  const headers = { 'Accept': 'application/json' };
  if (token !== NO_TOKEN) headers['Authorization'] = 'Bearer ' + token;
  const resp = await fetch('/v1/dashboard', {
    headers,
    cache: 'no-store',
    credentials: 'omit',
  });
  if (resp.status === 401) {
    throw new AuthError('the node refused the token');
  }
  if (!resp.ok) {
    let msg = '';
    try { msg = (await resp.json()).error || ''; } catch (e) { /* not JSON */ }
    throw new Error('HTTP ' + resp.status + (msg ? ': ' + msg : ''));
  }
  return resp.json();
}

function showLogin(message) {
  clearTimeout(timer);
  timer = null;
  $('board').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  setConn('not connected', '');
  $('token').focus();
}

function setConn(text, cls) {
  const c = $('conn');
  c.textContent = text;
  c.className = 'conn' + (cls ? ' ' + cls : '');
}

async function poll() {
  timer = null;
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    showLogin('');
    return;
  }
  try {
    const d = await fetchDashboard(token);
    render(d);
    setConn('live, updated ' + new Date().toLocaleTimeString(), 'ok');
  } catch (e) {
    if (e instanceof AuthError) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin('This node refused the token.');
      return;
    }
    setConn('connection lost: ' + e.message + ' (retrying)', 'bad');
  }
  timer = setTimeout(poll, POLL_MS);
}

// cell makes a table cell with text, and a class.
function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text === undefined || text === null ? '' : String(text);
  if (cls) td.className = cls;
  return td;
}

// fill replaces a table's rows; each row is an array of cells (or
// strings), with optional attributes in row.attrs.
function fill(tableID, rows, emptyText, columns) {
  const body = $(tableID).tBodies[0];
  const fresh = document.createElement('tbody');
  if (rows.length === 0) {
    const tr = document.createElement('tr');
    const td = cell(emptyText, 'empty');
    td.colSpan = columns;
    tr.appendChild(td);
    fresh.appendChild(tr);
  }
  for (const r of rows) {
    const tr = document.createElement('tr');
    for (const [k, v] of Object.entries(r.attrs || {})) {
      tr.setAttribute(k, v);
    }
    if (r.cls) tr.className = r.cls;
    for (const c of r.cells) {
      tr.appendChild(c instanceof Node ? c : cell(c));
    }
    fresh.appendChild(tr);
  }
  body.replaceWith(fresh);
}

function ago(iso, now) {
  if (!iso) return '-';
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (s < 1) return 'now';
  if (s < 90) return Math.round(s) + ' s';
  if (s < 5400) return Math.round(s / 60) + ' min';
  return Math.round(s / 3600) + ' h';
}

function when(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : '-';
}

function contact(info) {
  if (!info) return '-';
  if ((info.state || '').toLowerCase() === 'leader') return '-';
  if (info.last_contact_ms < 0) return 'never';
  return info.last_contact_ms + ' ms';
}

const eventText = {
  leader: (e) => e.node ? 'leader is ' + e.node : 'no leader (election)',
  node_down: (e) => 'gossip: ' + e.node + ' failed',
  node_up: (e) => 'gossip: ' + e.node + ' alive again',
  node_left: (e) => e.node + ' left the cluster',
  unreachable: (e) => e.node + ' does not answer heartbeats',
  reachable: (e) => e.node + ' answers heartbeats again',
};

function render(d) {
  const now = Date.parse(d.node.now) || Date.now();
  $('login').hidden = true;
  $('board').hidden = false;
  $('logout').hidden = false;
  $('domain').textContent = d.node.domain;
  document.title = 'mimi-hub ' + d.node.domain;

  const st = d.cluster;
  const servers = st ? st.servers : [];
  const members = servers.filter((s) => s.suffrage === 'voter' || s.suffrage === 'nonvoter');
  const voters = members.filter((s) => s.suffrage === 'voter');
  const answering = members.filter((s) => s.info);
  const leaderID = st ? st.leader_id : d.node.raft.leader_id;
  $('leader').textContent = leaderID || 'none';
  $('term').textContent = st ? st.term : d.node.raft.term;
  $('node-count').textContent = st ? members.length : '?';
  $('node-detail').textContent = st ? voters.length + ' voters, ' + answering.length + ' answering' : '';
  $('room-count').textContent = d.rooms.count;
  $('asked').textContent = d.node.node_id;
  $('asked-detail').textContent = d.node.ready ? 'ready' : 'not ready: ' + (d.node.not_ready || '');
  const ce = $('cluster-error');
  ce.hidden = !d.cluster_error;
  ce.textContent = d.cluster_error ? 'cluster status: ' + d.cluster_error : '';

  let leaderCommit = 0;
  for (const s of servers) {
    if (s.leader && s.info) leaderCommit = s.info.commit_index;
  }
  fill('nodes', servers.map((s) => {
    const info = s.info;
    let role = info ? (info.state || '').toLowerCase() : 'unreachable';
    if (s.gossip === 'left') role = 'left';
    const lag = info ? info.commit_index - info.applied_index : '';
    const behind = info && leaderCommit ? Math.max(0, leaderCommit - info.commit_index) : '';
    const roleCell = cell(role);
    if (!info && role !== 'left') roleCell.title = s.error || '';
    return {
      attrs: { 'data-node': s.id, 'data-role': role, 'data-suffrage': s.suffrage },
      cls: s.leader ? 'leader' : role,
      cells: [s.id + (s.leader ? ' \u2605' : ''), roleCell, s.suffrage, s.gossip || '-', info ? info.term : '-',
        info ? info.commit_index : '-', info ? info.applied_index : '-',
        cell(lag, lag > 128 ? 'warn' : ''), cell(behind, behind > 128 ? 'warn' : ''), contact(info), s.raft_addr],
    };
  }), 'no nodes known', 11);

  fill('largest', (d.rooms.largest || []).map((r) => ({ cells: [cell(r.id, 'wrap'), r.members, r.messages, r.epoch] })), 'no rooms', 4);
  fill('busiest', (d.rooms.busiest || []).map((r) => ({ cells: [cell(r.id, 'wrap'), r.per_minute.toFixed(1), r.messages, r.members] })), 'no rooms', 4);

  const peers = Object.keys(d.node.peers || {}).sort();
  fill('peers', peers.map((name) => {
    const p = d.node.peers[name];
    return {
      attrs: { 'data-peer': name },
      cells: [name, cell(p.outbox, p.outbox > 0 ? 'warn' : ''), ago(p.oldest_enqueued, now), p.delivered, p.dropped,
        cell(p.failures, p.failures > 0 ? 'warn' : ''), p.retry_at ? when(p.retry_at) : '-', cell(p.last_error || '-', 'wrap')],
    };
  }), d.node.raft.leader ? 'nothing queued for any peer' : 'nothing queued (deliveries run on the leader)', 8);

  fill('events', (d.events || []).map((e) => ({
    attrs: { 'data-kind': e.kind },
    cells: [when(e.at), (eventText[e.kind] || ((x) => x.kind + ' ' + x.node))(e), e.node || '-', e.term],
  })), 'no events since this node started', 4);

  const counts = Object.entries(d.refusal_counts || {}).sort((a, b) => b[1] - a[1]);
  $('refusal-counts').textContent = counts.length
    ? 'since start: ' + counts.map(([k, v]) => k + ' \u00d7' + v).join(', ')
    : 'none since this node started';
  fill('refusals', (d.refusals || []).slice(0, 30).map((r) => ({
    cells: [when(r.at), r.server, r.status, r.route, cell(r.message || '', 'wrap')],
  })), 'no refusals', 5);
}

function start() {
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = $('token').value.trim();
    if (!token) return;
    $('login-error').textContent = '';
    try {
      const d = await fetchDashboard(token);
      sessionStorage.setItem(TOKEN_KEY, token);
      $('token').value = '';
      render(d);
      setConn('live, updated ' + new Date().toLocaleTimeString(), 'ok');
      clearTimeout(timer);
      timer = setTimeout(poll, POLL_MS);
    } catch (e) {
      $('login-error').textContent = e instanceof AuthError ? 'This node refused the token.' : 'The node did not answer: ' + e.message;
    }
  });
  $('logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('');
  });
  if (sessionStorage.getItem(TOKEN_KEY)) {
    poll();
    return;
  }
  // A node without a token answers without one: no login then.
  fetchDashboard(NO_TOKEN).then(() => {
    sessionStorage.setItem(TOKEN_KEY, NO_TOKEN);
    poll();
  }, () => showLogin(''));
}

start();
