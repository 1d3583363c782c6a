// The Habitto web client: REST (docs/protocol.md) for accounts, lists and history, and one
// /ws/v2/ socket (SPEC-v2) for everything live. Plain DOM, no framework, no build step.
// User text only ever reaches the page through text nodes (textContent / append of strings).

const AUTH_KEY = "habitto.auth";
const outboxKey = (userId) => `habitto.outbox.${userId}`;
const THREAD_PAGE = 30;
const TYPING_REPEAT_MS = 3000; // "start" again while typing (SPEC-v2)
const TYPING_SHOWN_MS = 6000; // drop the indicator this long after the last "start"
const RECENT_WINDOW_MS = 10000; // `recent` ids: within 10 s of the newest held message
const MAX_BACKOFF_S = 30;
const RETRYABLE = new Set(["rate_limited", "store_failed", "server_error"]);

const $ = (id) => document.getElementById(id);
const phone = window.matchMedia("(max-width: 700px)");

// Builds an element; string children become text nodes, never markup.
function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "className") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) element.append(child);
  }
  return element;
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

// --- state -------------------------------------------------------------------------

const state = {
  auth: null, // {access, refresh, received}: received = Date.now() when the pair arrived
  me: null,
  conversations: new Map(), // counterpart id -> conversation (newConversation)
  threads: new Map(), // counterpart id -> {messages: Map(id -> message), hasOlder, loaded, loading}
  presence: new Map(), // user id -> {online, last_seen}
  typing: new Map(), // user id -> timer that drops the indicator
  outbox: [], // unsent {client_id, to, content}: memory + localStorage, resent with the same client_id
  failed: new Map(), // client_id -> {item, reason}: refused for good, shown until discarded
  held: new Map(), // message id -> created_at (ms) of every message the client holds
  afterId: 0, // the highest message id held (sync after_id)
  since: null, // the cursor of the last sync.done
  openId: null, // counterpart of the open thread
  editing: null, // message being edited
};

function newConversation(counterpart) {
  return { counterpart, last: null, unread: 0, baseline: 0, readByMe: 0, readByOther: 0, readSent: 0, draft: false };
}

function displayName(person) {
  return person.full_name || person.username || `User ${person.id}`;
}

function otherOf(pair) {
  return pair[0] === state.me.id ? pair[1] : pair[0];
}

// Held: shown, so not counted unread again and named in `recent`. Only what the socket
// delivered (and the list the socket resumes from) moves after_id: a thread page read over
// REST while the socket is away must not make the resume skip other conversations.
function noteHeld(message, { advance = false } = {}) {
  state.held.set(message.id, Date.parse(message.created_at));
  if (advance && message.id > state.afterId) state.afterId = message.id;
}

function recentIds() {
  let newest = -Infinity;
  for (const created of state.held.values()) newest = Math.max(newest, created);
  const ids = [];
  for (const [id, created] of state.held) if (created >= newest - RECENT_WINDOW_MS) ids.push(id);
  return ids.sort((a, b) => b - a).slice(0, 1000);
}

function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function saveOutbox() {
  if (state.me) localStorage.setItem(outboxKey(state.me.id), JSON.stringify(state.outbox));
}

function loadOutbox() {
  try {
    const items = JSON.parse(localStorage.getItem(outboxKey(state.me.id)) || "[]");
    return Array.isArray(items) ? items.filter((item) => item && item.client_id && item.to && item.content) : [];
  } catch {
    return [];
  }
}

// --- REST ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, data) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

async function api(method, path, body, { auth = true, retry = true } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && state.auth) headers.Authorization = `Bearer ${state.auth.access}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "The server cannot be reached.", null);
  }
  if (response.status === 401 && auth && retry && state.auth) {
    const outcome = await refreshToken();
    if (outcome === "ok") return api(method, path, body, { auth, retry: false });
    if (outcome === "rejected") signOut("Your session ended; please log in again.");
    throw new ApiError(401, "Not signed in.", null);
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok || (payload && payload.success === false)) {
    throw new ApiError(response.status, (payload && payload.message) || `HTTP ${response.status}`, payload && payload.data);
  }
  return payload ? payload.data : null;
}

function fieldErrors(error) {
  if (!error.data || typeof error.data !== "object") return error.message;
  const lines = [];
  for (const [field, problems] of Object.entries(error.data)) {
    const text = Array.isArray(problems) ? problems.join(" ") : String(problems);
    lines.push(field === "non_field_errors" || field === "detail" ? text : `${field}: ${text}`);
  }
  return lines.join("\n") || error.message;
}

// --- tokens ----------------------------------------------------------------------------

function jwtClaims(token) {
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return {};
  }
}

function storeAuth(pair) {
  state.auth = { access: pair.access, refresh: pair.refresh, received: Date.now() };
  localStorage.setItem(AUTH_KEY, JSON.stringify(state.auth));
  scheduleRefresh();
}

let refreshTimer = null;
let refreshing = null;

// Refresh at ~80% of the access token's lifetime, measured from when it arrived (the
// lifetime comes from the token; the browser's clock may be off from the server's).
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  const claims = jwtClaims(state.auth.access);
  if (!claims.exp) return;
  const lifetime = (claims.exp - (claims.iat || claims.exp - 300)) * 1000;
  const delay = Math.max(1000, state.auth.received + lifetime * 0.8 - Date.now());
  refreshTimer = setTimeout(async () => {
    const outcome = await refreshToken();
    if (outcome === "rejected") signOut("Your session ended; please log in again.");
    else if (outcome === "unreachable") {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(scheduleRefresh, 5000);
    }
  }, delay);
}

// One refresh at a time: "ok" | "rejected" | "unreachable". The socket reconnects with
// the new token (resuming, so nothing is lost).
function refreshToken() {
  if (!refreshing) {
    refreshing = (async () => {
      const stored = readStoredAuth();
      if (stored && stored.access !== state.auth.access) {
        state.auth = stored; // another tab refreshed already (the old refresh token is spent)
        scheduleRefresh();
      } else {
        try {
          storeAuth(await api("POST", "/api/token/refresh/", { refresh: state.auth.refresh }, { auth: false }));
        } catch (error) {
          return error.status === 0 || error.status >= 500 || error.status === 429 ? "unreachable" : "rejected";
        }
      }
      if (socket.ws) reconnectNow();
      return "ok";
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

function readStoredAuth() {
  try {
    const auth = JSON.parse(localStorage.getItem(AUTH_KEY) || "null");
    return auth && auth.access && auth.refresh ? auth : null;
  } catch {
    return null;
  }
}

// --- the socket ------------------------------------------------------------------------

const socket = { ws: null, ready: false, attempt: 0, upSince: 0, retryTimer: null, pingTimer: null, lastFrame: 0 };
const STABLE_MS = 60000; // a socket up this long resets the backoff

function connect() {
  clearTimeout(socket.retryTimer);
  if (!state.auth || socket.ws) return;
  const params = new URLSearchParams();
  if (state.afterId > 0 || state.since) {
    params.set("after_id", String(state.afterId));
    if (state.since) params.set("since", state.since);
    const recent = recentIds();
    if (recent.length) params.set("recent", recent.join(","));
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = params.toString();
  const ws = new WebSocket(`${scheme}//${location.host}/ws/v2/${query ? "?" + query : ""}`, ["access_token", state.auth.access]);
  socket.ws = ws;
  socket.ready = false;
  showConnection("connecting");
  ws.addEventListener("message", (event) => {
    if (socket.ws !== ws) return;
    socket.lastFrame = Date.now();
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    onFrame(frame);
  });
  ws.addEventListener("close", (event) => {
    if (socket.ws === ws) socketLost(event.code);
  });
}

function socketLost(code) {
  const ws = socket.ws;
  socket.ws = null;
  socket.ready = false;
  clearInterval(socket.pingTimer);
  if (ws && ws.readyState <= WebSocket.OPEN) ws.close();
  // Only a socket that stayed up resets the backoff: one the server accepts and then
  // closes at once (too many sockets, a failing sync) must not bring us back every second.
  if (socket.upSince && Date.now() - socket.upSince >= STABLE_MS) socket.attempt = 0;
  socket.upSince = 0;
  if (!state.auth) return;
  if (code === 4403) {
    showConnection("refused"); // this origin is not allowed: trying again cannot help
    return;
  }
  if (code === 4401) {
    // Expired or revoked token: a fresh one, then straight back (a rejected refresh signs out).
    refreshToken().then((outcome) => {
      if (outcome === "rejected") signOut("Your session ended; please log in again.");
      else if (!socket.ws) retryLater();
    });
    return;
  }
  retryLater();
}

function retryLater() {
  clearTimeout(socket.retryTimer);
  // 1, 2, 4, ... 30 s, ±20 % so that clients dropped together do not return in step.
  const seconds = Math.min(MAX_BACKOFF_S, 2 ** socket.attempt) * (0.8 + 0.4 * Math.random());
  socket.attempt += 1;
  showConnection("offline", seconds);
  socket.retryTimer = setTimeout(connect, seconds * 1000);
}

function reconnectNow() {
  const ws = socket.ws;
  socket.ws = null;
  socket.ready = false;
  clearInterval(socket.pingTimer);
  if (ws) ws.close(1000);
  connect();
}

function send(frame) {
  if (!socket.ws || socket.ws.readyState !== WebSocket.OPEN) return false;
  socket.ws.send(JSON.stringify(frame));
  return true;
}

function startHeartbeat(seconds) {
  clearInterval(socket.pingTimer);
  const interval = Math.max(5, Math.min(seconds || 25, 25)) * 1000;
  socket.lastFrame = Date.now();
  socket.pingTimer = setInterval(() => {
    // Two pongs missed (no frame at all for two intervals and more): the socket is dead.
    if (Date.now() - socket.lastFrame > interval * 2 + 2000) socketLost(1006);
    else send({ type: "ping" });
  }, interval);
}

function onFrame(frame) {
  switch (frame.type) {
    case "hello":
      startHeartbeat(frame.heartbeat);
      break;
    case "sync.done":
      state.afterId = Math.max(state.afterId, frame.after_id || 0);
      state.since = frame.since || state.since;
      socket.ready = true;
      socket.upSince = Date.now();
      showConnection("online");
      // A read frame lost with the last socket is sent again (the replayed receipts say what counted).
      for (const conversation of state.conversations.values()) conversation.readSent = conversation.readByMe;
      flushOutbox();
      if (state.openId !== null) queryPresence(state.openId);
      markReadIfVisible();
      break;
    case "presence.snapshot":
      for (const entry of frame.users || []) state.presence.set(entry.user, { online: entry.online, last_seen: entry.last_seen });
      renderAll();
      break;
    case "presence":
      state.presence.set(frame.user, { online: frame.online, last_seen: frame.last_seen });
      renderAll();
      break;
    case "message.created":
      onMessage(frame.message, frame.counterpart);
      break;
    case "message.edited":
      onEdited(frame.message);
      break;
    case "message.deleted":
      onDeleted(frame.message_id, otherOf(frame.pair));
      break;
    case "thread.read":
      onRead(frame.reader, frame.last_read_id, otherOf(frame.pair));
      break;
    case "conversation.cleared":
      onCleared(otherOf(frame.pair), frame.cleared_before_id);
      break;
    case "typing":
      onTyping(frame.user, frame.state);
      break;
    case "ack":
      onAck(frame.client_id, frame.message_id);
      break;
    case "error":
      onError(frame);
      break;
    default:
      break; // pong, notifications: nothing to show
  }
}

// --- events --------------------------------------------------------------------------

function conversationWith(otherId, counterpart) {
  let conversation = state.conversations.get(otherId);
  if (!conversation) {
    conversation = newConversation(counterpart || { id: otherId, username: "", full_name: "" });
    state.conversations.set(otherId, conversation);
  } else if (counterpart) {
    conversation.counterpart = { ...conversation.counterpart, ...counterpart };
  }
  return conversation;
}

function onMessage(message, counterpart) {
  const mine = message.sender === state.me.id;
  const otherId = mine ? message.receiver : message.sender;
  const known = state.held.has(message.id);
  noteHeld(message, { advance: true });
  if (mine && message.client_id) settleOutbox(message.client_id);
  const conversation = conversationWith(otherId, counterpart);
  const thread = state.threads.get(otherId);
  if (thread) thread.messages.set(message.id, message);
  if (!conversation.last || message.id >= conversation.last.id) conversation.last = message;
  if (!mine && !known && message.id > conversation.baseline && message.id > conversation.readByMe) {
    if (!threadVisible(otherId)) conversation.unread += 1;
    dropTyping(otherId);
  }
  if (socket.ready) queryPresence(otherId);
  renderList();
  if (state.openId === otherId) {
    renderThread({ follow: mine });
    markReadIfVisible();
  }
}

function onAck(clientId, messageId) {
  const item = state.outbox.find((entry) => entry.client_id === clientId);
  if (!item) return;
  settleOutbox(clientId);
  // Shown as sent at once; message.created follows with the stored copy.
  const thread = state.threads.get(item.to);
  if (thread && !thread.messages.has(messageId)) {
    thread.messages.set(messageId, {
      id: messageId, sender: state.me.id, receiver: item.to, content: item.content,
      created_at: new Date().toISOString(), edited_at: null, is_read: false, client_id: clientId,
    });
  }
  if (state.openId === item.to) renderThread({});
}

function settleOutbox(clientId) {
  const before = state.outbox.length;
  state.outbox = state.outbox.filter((entry) => entry.client_id !== clientId);
  if (state.outbox.length !== before) saveOutbox();
}

function onEdited(message) {
  const otherId = message.sender === state.me.id ? message.receiver : message.sender;
  const thread = state.threads.get(otherId);
  if (thread && thread.messages.has(message.id)) thread.messages.set(message.id, message);
  const conversation = state.conversations.get(otherId);
  if (conversation && conversation.last && conversation.last.id === message.id) conversation.last = message;
  renderList();
  if (state.openId === otherId) renderThread({});
}

function onDeleted(messageId, otherId) {
  const thread = state.threads.get(otherId);
  if (thread) thread.messages.delete(messageId);
  const conversation = state.conversations.get(otherId);
  if (conversation && conversation.last && conversation.last.id === messageId) {
    conversation.last = thread && thread.loaded ? newestOf(thread) : null;
    if (!conversation.last) reloadConversations();
  }
  renderList();
  if (state.openId === otherId) renderThread({});
}

function newestOf(thread) {
  let newest = null;
  for (const message of thread.messages.values()) if (!newest || message.id > newest.id) newest = message;
  return newest;
}

function onRead(reader, lastReadId, otherId) {
  const conversation = state.conversations.get(otherId);
  if (!conversation) return;
  if (reader === state.me.id) {
    conversation.readByMe = Math.max(conversation.readByMe, lastReadId);
    const thread = state.threads.get(otherId);
    conversation.unread = thread && thread.loaded
      ? [...thread.messages.values()].filter((m) => m.sender === otherId && m.id > conversation.readByMe).length
      : conversation.last && conversation.last.id <= lastReadId ? 0 : conversation.unread;
    renderList();
  } else {
    conversation.readByOther = Math.max(conversation.readByOther, lastReadId);
    if (state.openId === otherId) renderThread({});
  }
}

function onCleared(otherId, clearedBeforeId) {
  const thread = state.threads.get(otherId);
  if (thread) for (const id of [...thread.messages.keys()]) if (id <= clearedBeforeId) thread.messages.delete(id);
  const conversation = state.conversations.get(otherId);
  if (conversation) {
    if (conversation.last && conversation.last.id <= clearedBeforeId) conversation.last = null;
    conversation.unread = 0;
  }
  renderList();
  if (state.openId === otherId) renderThread({});
}

function onTyping(userId, typingState) {
  dropTyping(userId, false);
  if (typingState === "start") state.typing.set(userId, setTimeout(() => dropTyping(userId), TYPING_SHOWN_MS));
  renderList();
  renderTyping();
}

function dropTyping(userId, render = true) {
  if (!state.typing.has(userId)) return;
  clearTimeout(state.typing.get(userId));
  state.typing.delete(userId);
  if (render) {
    renderList();
    renderTyping();
  }
}

function onError(frame) {
  const item = frame.client_id && state.outbox.find((entry) => entry.client_id === frame.client_id);
  if (item) {
    if (RETRYABLE.has(frame.code)) {
      setTimeout(flushOutbox, 2000); // kept in the outbox, tried again with the same client_id
      return;
    }
    settleOutbox(item.client_id);
    state.failed.set(item.client_id, { item, reason: frame.message || frame.code });
    if (state.openId === item.to) renderThread({});
    return;
  }
  if (["no_conversation", "sync_in_progress"].includes(frame.code)) return; // typing before a first message
  if (frame.code === "invalid_cursor") {
    state.since = null; // resume from the id alone next time
    return;
  }
  showNotice(frame.message || frame.code);
}

// --- sending ---------------------------------------------------------------------------

function queueSend(to, content) {
  const item = { client_id: newClientId(), to, content };
  state.outbox.push(item);
  saveOutbox();
  conversationWith(to);
  if (socket.ready) sendItem(item);
  renderList();
  renderThread({ follow: true });
}

function sendItem(item) {
  send({ type: "send", to: item.to, content: item.content, client_id: item.client_id, ref: item.client_id });
}

// In order, after every (re)connect: a copy the server already stored is acknowledged as a duplicate.
function flushOutbox() {
  if (!socket.ready) return;
  for (const item of state.outbox) sendItem(item);
}

let typingSentAt = 0;
let typingTo = null;

function typingInput() {
  const text = $("composer-input").value;
  if (state.editing || state.openId === null || !socket.ready) return;
  if (!text.trim()) {
    typingStopped();
    return;
  }
  if (Date.now() - typingSentAt >= TYPING_REPEAT_MS || typingTo !== state.openId) {
    if (typingTo !== null && typingTo !== state.openId) typingStopped();
    typingSentAt = Date.now();
    typingTo = state.openId;
    send({ type: "typing", to: state.openId, state: "start" });
  }
}

function typingStopped() {
  if (typingTo === null) return;
  send({ type: "typing", to: typingTo, state: "stop" });
  typingTo = null;
  typingSentAt = 0;
}

// --- loading ---------------------------------------------------------------------------

// `first`: before the socket opens; the socket resumes after the newest message listed.
async function loadConversations({ first = false } = {}) {
  const page = await api("GET", "/api/messages/conversations/?page_size=100");
  for (const item of page.results) {
    const conversation = conversationWith(item.counterpart.id, item.counterpart);
    const last = item.last_message;
    if (last && (!conversation.last || last.id >= conversation.last.id)) {
      conversation.last = last;
      noteHeld(last, { advance: first });
      conversation.baseline = Math.max(conversation.baseline, last.id);
      conversation.unread = item.unread_count;
      if (last.sender === state.me.id && last.is_read) conversation.readByOther = Math.max(conversation.readByOther, last.id);
    }
  }
}

let reloadTimer = null;

function reloadConversations() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => loadConversations().then(renderList, () => {}), 300);
}

async function loadThread(otherId, older) {
  const thread = state.threads.get(otherId);
  if (!thread || thread.loading) return;
  thread.loading = true;
  const params = new URLSearchParams({ other_user_id: String(otherId), page_size: String(THREAD_PAGE) });
  if (older) {
    const oldest = Math.min(...thread.messages.keys());
    if (Number.isFinite(oldest)) params.set("before_id", String(oldest));
  }
  try {
    const page = await api("GET", `/api/messages/thread/?${params}`);
    const conversation = conversationWith(otherId);
    for (const message of page.results) {
      noteHeld(message);
      if (!thread.messages.has(message.id)) thread.messages.set(message.id, message);
      if (message.sender === state.me.id && message.is_read) conversation.readByOther = Math.max(conversation.readByOther, message.id);
      if (!conversation.last || message.id > conversation.last.id) conversation.last = message;
    }
    thread.hasOlder = Boolean(page.next);
    thread.loaded = true;
  } catch (error) {
    showNotice(error.message);
  } finally {
    thread.loading = false;
  }
  if (state.openId === otherId) {
    renderThread({ keepAnchor: older, follow: !older });
    markReadIfVisible();
  }
}

const presenceAsked = new Map(); // user id -> id of the conversation's last message when asked

// Contacts arrive in the snapshot; someone who becomes a contact later (by a first message)
// is asked for, once per new message until known: the server leaves strangers out.
function queryPresence(userId) {
  const conversation = state.conversations.get(userId);
  const mark = conversation && conversation.last ? conversation.last.id : 0;
  if (state.presence.has(userId) || presenceAsked.get(userId) === mark) return;
  if (send({ type: "presence.query", users: [userId] })) presenceAsked.set(userId, mark);
}

// --- read receipts -----------------------------------------------------------------------

function threadVisible(otherId) {
  return state.openId === otherId && document.visibilityState === "visible"
    && (!phone.matches || document.body.classList.contains("view-thread"));
}

function markReadIfVisible() {
  const otherId = state.openId;
  if (otherId === null || !socket.ready || !threadVisible(otherId)) return;
  const conversation = state.conversations.get(otherId);
  if (!conversation) return;
  let newest = conversation.last && conversation.last.sender === otherId ? conversation.last.id : 0;
  const thread = state.threads.get(otherId);
  if (thread) for (const message of thread.messages.values()) if (message.sender === otherId) newest = Math.max(newest, message.id);
  if (newest > conversation.readByMe && newest > conversation.readSent
      && send({ type: "read", message_id: newest, ref: `read:${newest}` })) {
    conversation.readSent = newest;
  }
  if (conversation.unread) {
    conversation.unread = 0;
    renderList();
  }
}

// --- rendering -----------------------------------------------------------------------------

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });

function when(iso) {
  const moment = new Date(iso);
  return moment.toDateString() === new Date().toDateString() ? timeFormat.format(moment) : dayFormat.format(moment);
}

function presenceText(userId) {
  const presence = state.presence.get(userId);
  if (!presence) return "";
  if (presence.online) return "online";
  return presence.last_seen ? `last seen ${when(presence.last_seen)}` : "offline";
}

function renderAll() {
  renderList();
  renderThreadHeader();
}

const listItems = new Map(); // counterpart id -> <li>

function conversationOrder() {
  // Newest last message first; one just started from the search (no message yet) on top,
  // a cleared one at the bottom.
  const key = (conversation) => (conversation.last ? conversation.last.id : conversation.draft ? Number.MAX_SAFE_INTEGER : 0);
  return [...state.conversations.entries()].sort(([, a], [, b]) => key(b) - key(a));
}

function renderList() {
  const list = $("conversations");
  const order = conversationOrder();
  $("no-conversations").hidden = order.length > 0;
  order.forEach(([otherId, conversation], index) => {
    let item = listItems.get(otherId);
    if (!item) {
      const button = h("button", { type: "button", className: "row", onclick: () => openThread(otherId) });
      item = h("li", { dataset: { user: String(otherId) } }, button);
      listItems.set(otherId, item);
    }
    const button = item.firstChild;
    const presence = state.presence.get(otherId);
    const typing = state.typing.has(otherId);
    const preview = typing ? "typing…" : conversation.last ? `${conversation.last.sender === state.me.id ? "You: " : ""}${conversation.last.content}` : "No messages yet";
    const unread = state.openId === otherId && threadVisible(otherId) ? 0 : conversation.unread;
    button.setAttribute("aria-current", String(state.openId === otherId));
    button.replaceChildren(
      h("span", { className: presence && presence.online ? "dot online" : "dot", "aria-hidden": "true" }),
      h("span", { className: "who" },
        h("span", { className: "name" }, displayName(conversation.counterpart)),
        h("span", { className: typing ? "preview typing-now" : "preview" }, preview)),
      h("span", { className: "badge", dataset: { count: String(unread) }, "aria-label": `${unread} unread` }, String(unread)),
      h("span", { className: "visually-hidden" }, presence && presence.online ? "online" : ""),
    );
    if (list.children[index] !== item) list.insertBefore(item, list.children[index] || null);
  });
  for (const [otherId, item] of listItems) {
    if (!state.conversations.has(otherId)) {
      item.remove();
      listItems.delete(otherId);
    }
  }
}

function renderThreadHeader() {
  const otherId = state.openId;
  if (otherId === null) return;
  const conversation = state.conversations.get(otherId);
  setText($("thread-name"), displayName(conversation.counterpart));
  setText($("thread-status"), presenceText(otherId));
  const presence = state.presence.get(otherId);
  $("thread-dot").className = presence && presence.online ? "dot online" : "dot";
}

function renderTyping() {
  const otherId = state.openId;
  const name = otherId !== null && state.conversations.get(otherId) ? displayName(state.conversations.get(otherId).counterpart) : "";
  setText($("typing"), otherId !== null && state.typing.has(otherId) ? `${name} is typing…` : "");
}

const messageItems = new Map(); // key (id, or "c:" + client_id while unsent) -> <li>

function statusOf(message, conversation) {
  if (message.sender !== state.me.id) return null;
  return message.is_read || message.id <= conversation.readByOther ? "read" : "sent";
}

const TICKS = { pending: "🕓", sent: "✓", read: "✓✓", failed: "!" };
const TICK_LABELS = { pending: "Sending", sent: "Sent", read: "Read", failed: "Not sent" };

function messageElement(key, build) {
  let item = messageItems.get(key);
  if (!item) {
    item = build();
    messageItems.set(key, item);
  }
  return item;
}

function storedMessageItem(message, conversation) {
  const mine = message.sender === state.me.id;
  const item = messageElement(String(message.id), () => {
    const actions = mine
      ? h("span", { className: "actions" },
        h("button", { type: "button", onclick: () => startEdit(message.id) }, "Edit"),
        h("button", { type: "button", onclick: () => deleteMessage(message.id) }, "Delete"))
      : null;
    return h("li", { className: mine ? "message mine" : "message", dataset: { id: String(message.id) } },
      h("div", { className: "bubble" }),
      h("div", { className: "meta" }, h("span", { className: "time" }), h("span", { className: "edited" }), h("span", { className: "tick" }), actions));
  });
  const status = statusOf(message, conversation);
  item.dataset.status = status || "";
  if (message.client_id) item.dataset.clientId = message.client_id;
  setText(item.querySelector(".bubble"), message.content);
  setText(item.querySelector(".time"), when(message.created_at));
  setText(item.querySelector(".edited"), message.edited_at ? "edited" : "");
  fillTick(item.querySelector(".tick"), status);
  return item;
}

function unsentItem(item, status, reason) {
  const element = messageElement(`c:${item.client_id}`, () => h("li",
    { className: "message mine", dataset: { clientId: item.client_id } },
    h("div", { className: "bubble" }, item.content),
    h("div", { className: "meta" }, h("span", { className: "time" }), h("span", { className: "tick" }),
      h("span", { className: "actions" }))));
  element.dataset.status = status;
  setText(element.querySelector(".time"), reason ? `Not sent: ${reason}` : "");
  fillTick(element.querySelector(".tick"), status);
  const actions = element.querySelector(".actions");
  if (status === "failed" && !actions.firstChild) {
    actions.append(h("button", { type: "button", onclick: () => discardFailed(item.client_id) }, "Discard"));
  }
  return element;
}

function fillTick(tick, status) {
  tick.dataset.status = status || "";
  setText(tick, status ? TICKS[status] : "");
  if (status) tick.setAttribute("aria-label", TICK_LABELS[status]);
  else tick.removeAttribute("aria-label");
}

function renderThread({ follow = false, keepAnchor = false, opened = false }) {
  const otherId = state.openId;
  if (otherId === null) return;
  const conversation = state.conversations.get(otherId);
  const thread = state.threads.get(otherId);
  const scroller = $("scroller");
  const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  const heightBefore = scroller.scrollHeight;
  const topBefore = scroller.scrollTop;

  const stored = thread ? [...thread.messages.values()].sort((a, b) => a.id - b.id) : [];
  const items = stored.map((message) => storedMessageItem(message, conversation));
  for (const [, failed] of state.failed) if (failed.item.to === otherId) items.push(unsentItem(failed.item, "failed", failed.reason));
  for (const entry of state.outbox) if (entry.to === otherId) items.push(unsentItem(entry, "pending"));

  const list = $("messages");
  const wanted = new Set(items);
  for (const child of [...list.children]) if (!wanted.has(child)) child.remove();
  items.forEach((item, index) => {
    if (list.children[index] !== item) list.insertBefore(item, list.children[index] || null);
  });
  for (const [key, item] of messageItems) if (!wanted.has(item)) messageItems.delete(key);

  $("older").hidden = !(thread && thread.hasOlder);
  renderThreadHeader();
  renderTyping();
  if (keepAnchor) scroller.scrollTop = topBefore + scroller.scrollHeight - heightBefore;
  else if (follow || opened || nearBottom) scroller.scrollTop = scroller.scrollHeight;
}

// --- actions ---------------------------------------------------------------------------------

function openThread(otherId) {
  if (state.openId !== otherId) {
    typingStopped();
    cancelEdit();
    $("messages").replaceChildren();
    messageItems.clear();
  }
  state.openId = otherId;
  document.body.classList.add("view-thread");
  document.body.classList.remove("view-list");
  $("thread-empty").hidden = true;
  $("thread").hidden = false;
  if (!state.threads.has(otherId)) {
    state.threads.set(otherId, { messages: new Map(), hasOlder: false, loaded: false, loading: false });
    loadThread(otherId, false);
  }
  queryPresence(otherId);
  renderList();
  renderThread({ opened: true });
  markReadIfVisible();
  // On a phone the keyboard would cover the thread: the heading takes the focus there.
  (phone.matches ? $("thread-name") : $("composer-input")).focus();
}

function closeThread() {
  typingStopped();
  document.body.classList.remove("view-thread");
  document.body.classList.add("view-list");
  const item = listItems.get(state.openId);
  if (item) item.firstChild.focus();
}

function startEdit(messageId) {
  const thread = state.threads.get(state.openId);
  const message = thread && thread.messages.get(messageId);
  if (!message) return;
  typingStopped();
  state.editing = messageId;
  $("editing").hidden = false;
  $("send").textContent = "Save";
  const input = $("composer-input");
  input.value = message.content;
  input.focus();
}

function cancelEdit() {
  if (state.editing === null) return;
  state.editing = null;
  $("editing").hidden = true;
  $("send").textContent = "Send";
  $("composer-input").value = "";
}

function deleteMessage(messageId) {
  if (!window.confirm("Delete this message for both of you?")) return;
  if (!send({ type: "delete", message_id: messageId, ref: `delete:${messageId}` })) showNotice("Offline: try again once connected.");
}

function discardFailed(clientId) {
  state.failed.delete(clientId);
  renderThread({});
}

async function clearConversation() {
  const otherId = state.openId;
  if (otherId === null || !window.confirm("Clear this conversation? It is hidden for you only.")) return;
  try {
    const data = await api("POST", "/api/messages/clear_conversation/", { other_user_id: otherId });
    onCleared(otherId, data.cleared_before_id);
  } catch (error) {
    showNotice(error.message);
  }
}

function submitComposer(event) {
  event.preventDefault();
  const input = $("composer-input");
  const content = input.value;
  if (!content.trim() || state.openId === null) return;
  if (state.editing !== null) {
    if (!send({ type: "edit", message_id: state.editing, content, ref: `edit:${state.editing}` })) {
      showNotice("Offline: the edit needs a connection.");
      return;
    }
    cancelEdit();
    return;
  }
  input.value = "";
  typingStopped();
  queueSend(state.openId, content);
}

let searchTimer = null;
let searchSerial = 0;

function searchPeople() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const query = $("search-input").value.trim();
    const results = $("search-results");
    const serial = ++searchSerial;
    if (!query) {
      results.hidden = true;
      results.replaceChildren();
      return;
    }
    let page;
    try {
      page = await api("GET", `/api/users/?${new URLSearchParams({ search: query, page_size: "10" })}`);
    } catch (error) {
      showNotice(error.message);
      return;
    }
    if (serial !== searchSerial) return;
    const people = page.results.filter((person) => person.id !== state.me.id);
    results.replaceChildren(...(people.length ? people.map((person) => h("li", {},
      h("button", { type: "button", className: "row", onclick: () => startConversation(person) },
        h("span", { className: "who" }, h("span", { className: "name" }, displayName(person)),
          h("span", { className: "preview" }, `@${person.username}`))))) : [h("li", { className: "hint" }, "Nobody found.")]));
    results.hidden = false;
  }, 250);
}

function startConversation(person) {
  const conversation = conversationWith(person.id, { id: person.id, username: person.username, full_name: person.full_name });
  conversation.draft = !conversation.last;
  $("search-input").value = "";
  $("search-results").hidden = true;
  $("search-results").replaceChildren();
  openThread(person.id);
}

// --- screens -----------------------------------------------------------------------------------

let noticeTimer = null;

function showNotice(text) {
  const notice = $("notice");
  notice.textContent = text;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    notice.hidden = true;
  }, 6000);
}

let countdownTimer = null;

function showConnection(kind, seconds) {
  const element = $("connection");
  element.dataset.state = kind;
  $("reconnect").hidden = kind !== "offline" && kind !== "refused";
  clearInterval(countdownTimer);
  if (kind === "online") element.textContent = "Online";
  else if (kind === "connecting") element.textContent = "Connecting…";
  else if (kind === "refused") element.textContent = "The server refused this page's connection";
  else {
    const until = Date.now() + seconds * 1000;
    const tick = () => {
      element.textContent = `Offline, reconnecting in ${Math.max(0, Math.ceil((until - Date.now()) / 1000))} s`;
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
  }
}

function showAuth(which) {
  document.body.className = "";
  $("chat").hidden = true;
  $("auth").hidden = false;
  $("login-form").hidden = which !== "login";
  $("register-form").hidden = which !== "register";
  $(which === "login" ? "login-username" : "register-username").focus();
}

// The chat screen at once; the user, the queued messages and the conversation list over
// REST, then the socket (resuming after the newest message the list showed). A server that
// cannot be reached is tried again every few seconds.
async function startChat() {
  document.body.className = "view-list";
  $("auth").hidden = true;
  $("chat").hidden = false;
  showConnection("connecting");
  try {
    state.me = await api("GET", "/api/users/me/");
    state.outbox = loadOutbox();
    await loadConversations({ first: true });
  } catch (error) {
    if (state.auth) {
      showNotice(error.message);
      setTimeout(() => state.auth && startChat(), 3000);
    }
    return;
  }
  for (const item of state.outbox) conversationWith(item.to);
  const fullName = [state.me.first_name, state.me.last_name].filter(Boolean).join(" ");
  setText($("me"), displayName({ ...state.me, full_name: fullName }));
  renderList();
  scheduleRefresh();
  connect();
}

function resetState() {
  Object.assign(state, {
    me: null, conversations: new Map(), threads: new Map(), presence: new Map(), outbox: [],
    failed: new Map(), held: new Map(), afterId: 0, since: null, openId: null, editing: null,
  });
  for (const timer of state.typing.values()) clearTimeout(timer);
  state.typing = new Map();
  listItems.clear();
  messageItems.clear();
  presenceAsked.clear();
  $("conversations").replaceChildren();
  $("messages").replaceChildren();
  $("thread").hidden = true;
  $("thread-empty").hidden = false;
}

function signOut(reason, { forgetOutbox = false } = {}) {
  if (forgetOutbox && state.me) localStorage.removeItem(outboxKey(state.me.id));
  state.auth = null;
  localStorage.removeItem(AUTH_KEY);
  clearTimeout(refreshTimer);
  clearTimeout(socket.retryTimer);
  clearInterval(socket.pingTimer);
  const ws = socket.ws;
  socket.ws = null;
  socket.ready = false;
  if (ws) ws.close(1000);
  resetState();
  showAuth("login");
  if (reason) $("login-error").textContent = reason;
}

async function logIn(event) {
  event.preventDefault();
  const error = $("login-error");
  error.textContent = "";
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  if (!username || !password) {
    error.textContent = "Enter your username and password.";
    return;
  }
  $("login-submit").disabled = true;
  try {
    storeAuth(await api("POST", "/api/login/", { username, password }, { auth: false }));
    $("login-password").value = "";
    await startChat();
  } catch (failure) {
    error.textContent = failure.status === 401 ? "Wrong username or password." : fieldErrors(failure);
  } finally {
    $("login-submit").disabled = false;
  }
}

async function register(event) {
  event.preventDefault();
  const error = $("register-error");
  error.textContent = "";
  const fields = {};
  for (const name of ["username", "email", "first_name", "last_name", "password"]) {
    fields[name] = $(`register-${name.replace("_", "-")}`).value;
  }
  fields.username = fields.username.trim();
  $("register-submit").disabled = true;
  try {
    await api("POST", "/api/users/", fields, { auth: false });
    storeAuth(await api("POST", "/api/login/", { username: fields.username, password: fields.password }, { auth: false }));
    $("register-password").value = "";
    await startChat();
  } catch (failure) {
    error.textContent = fieldErrors(failure);
  } finally {
    $("register-submit").disabled = false;
  }
}

async function logOut() {
  try {
    await api("POST", "/api/logout/", { refresh: state.auth.refresh }, { retry: false });
  } catch {
    // Signed out here either way; the tokens expire on their own.
  }
  signOut("", { forgetOutbox: true });
}

// --- wiring ---------------------------------------------------------------------------------------

function wire() {
  $("login-form").addEventListener("submit", logIn);
  $("register-form").addEventListener("submit", register);
  $("show-register").addEventListener("click", () => showAuth("register"));
  $("show-login").addEventListener("click", () => showAuth("login"));
  $("logout").addEventListener("click", logOut);
  $("reconnect").addEventListener("click", () => {
    socket.attempt = 0;
    connect();
  });
  $("search-input").addEventListener("input", searchPeople);
  $("search-form").addEventListener("submit", (event) => event.preventDefault());
  $("search-input").addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.target.value = "";
      searchPeople();
    }
  });
  $("back").addEventListener("click", closeThread);
  $("clear").addEventListener("click", clearConversation);
  $("older").addEventListener("click", () => loadThread(state.openId, true));
  $("scroller").addEventListener("scroll", () => {
    const thread = state.threads.get(state.openId);
    if ($("scroller").scrollTop < 40 && thread && thread.loaded && thread.hasOlder && !thread.loading) loadThread(state.openId, true);
  });
  const input = $("composer-input");
  $("composer").addEventListener("submit", submitComposer);
  input.addEventListener("input", () => {
    input.style.height = "auto";
    input.style.height = `${input.scrollHeight}px`;
    typingInput();
  });
  input.addEventListener("blur", typingStopped);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    } else if (event.key === "Escape" && state.editing !== null) {
      event.preventDefault();
      cancelEdit();
    }
  });
  document.addEventListener("visibilitychange", markReadIfVisible);
  window.addEventListener("focus", markReadIfVisible);
  phone.addEventListener("change", markReadIfVisible);
  // The browser knows the network is gone before a missed pong would tell.
  window.addEventListener("offline", () => {
    if (socket.ws) socketLost(1006);
  });
  window.addEventListener("online", () => {
    if (state.auth && !socket.ws) {
      socket.attempt = 0;
      connect();
    }
  });
  // Leaving the page closes the socket at once (last seen is right, and a page kept in
  // the back/forward cache holds no socket); coming back from that cache reconnects.
  window.addEventListener("pagehide", () => {
    typingStopped();
    clearTimeout(socket.retryTimer);
    clearInterval(socket.pingTimer);
    const ws = socket.ws;
    socket.ws = null;
    socket.ready = false;
    if (ws) ws.close(1000);
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && state.auth && state.me) {
      socket.attempt = 0;
      connect();
    }
  });
  window.addEventListener("storage", (event) => {
    if (event.key !== AUTH_KEY || !state.auth) return;
    const stored = readStoredAuth();
    if (!stored) signOut("You logged out in another tab.");
    else if (stored.access !== state.auth.access) {
      state.auth = stored; // another tab refreshed: use its pair (ours is spent)
      scheduleRefresh();
    }
  });
}

wire();
state.auth = readStoredAuth();
if (state.auth) startChat();
else showAuth("login");
