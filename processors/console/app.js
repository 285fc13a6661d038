/* Streamboard console: boards, a player page and pipeline health over the public read API.
 *
 * No framework and no build step. Everything a client sent (user ids, user names, categories) reaches the page
 * as text: nodes are built with createElement and filled with textContent or text nodes, never innerHTML (the
 * Content-Security-Policy also requires Trusted Types, so an HTML string sink would throw). The admin key is read
 * from its field when the form is sent, cleared at once and kept nowhere: not in storage, cookies or the URL. */
"use strict";

(function () {
  const WINDOWS = { all: "All time", "30d": "Last 30 days", "365d": "Last 365 days" };
  const PAGE_SIZES = [10, 25, 50, 100];
  const DEFAULT_PAGE_SIZE = 25;
  const BOARD_FETCH_LIMIT = 1000; // the API's ceiling: one request per board, paged here
  const NEIGHBOURS = 11; // the player and five either side
  const HEALTH_POLL_MS = 15000;
  const ADMIN_KEY_HEADER = "x-api-key";
  const NUMBER = new Intl.NumberFormat("en-US");
  const DECIMAL = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

  const main = document.getElementById("main");
  const liveStatus = document.getElementById("status");
  let teardown = []; // run when the view changes (timers, listeners)
  let renderToken = 0;

  // --- DOM helpers: text only -------------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function field(label, control, hint) {
    const hintNode = hint ? el("span", { class: "hint", id: control.id + "-hint" }, hint) : null;
    if (hintNode) control.setAttribute("aria-describedby", hintNode.id);
    return el("div", { class: "field" }, el("label", { for: control.id }, label), hintNode, control);
  }

  function announce(message) {
    liveStatus.textContent = message;
  }

  function showNotice(node, message, kind) {
    node.hidden = false;
    node.className = "notice" + (kind ? " " + kind : "");
    node.textContent = message;
  }

  function hideNotice(node) {
    node.hidden = true;
    node.textContent = "";
  }

  // --- formatting ----------------------------------------------------------------------------------------------

  function fmtNumber(n) {
    return typeof n === "number" && isFinite(n) ? NUMBER.format(n) : "—";
  }

  function fmtDuration(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds)) return "—";
    if (seconds < 90) return DECIMAL.format(seconds) + " s";
    if (seconds < 5400) return DECIMAL.format(seconds / 60) + " min";
    if (seconds < 172800) return DECIMAL.format(seconds / 3600) + " h";
    return DECIMAL.format(seconds / 86400) + " days";
  }

  function timeEl(iso, short) {
    if (!iso) return "—";
    const date = new Date(iso);
    const today = !isNaN(date.getTime()) && date.toDateString() === new Date().toDateString();
    const text = isNaN(date.getTime()) ? String(iso)
      : short && today ? "today " + date.toLocaleTimeString() : date.toLocaleString();
    return el("time", { datetime: String(iso), title: String(iso) }, text);
  }

  function scopeLabel(scope) {
    return scope === "overall" ? "Overall" : scope;
  }

  function fmtPercentile(share) {
    // DESIGN section 5: the share of the board's players ranked strictly below, 0 to 1.
    return typeof share === "number" && isFinite(share) ? "ahead of " + DECIMAL.format(share * 100) + "%" : "—";
  }

  // --- the read API -----------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, init) {
    let response;
    try {
      // no-cache: revalidate (If-None-Match) so a refresh shows at once; an unchanged board is a 304.
      response = await fetch(path, Object.assign({ cache: "no-cache", headers: { accept: "application/json" } }, init));
    } catch (err) {
      throw new ApiError(0, "The read API could not be reached. Check the connection and try again.");
    }
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      const message = body && typeof body.error === "string" ? body.error : "The read API answered " + response.status + ".";
      throw new ApiError(response.status, message);
    }
    return body;
  }

  function boardPath(scope, params) {
    return "/v1/leaderboards/" + encodeURIComponent(scope) + "?" + new URLSearchParams(params).toString();
  }

  // --- routing: #/boards, #/player?id=..., #/health ---------------------------------------------------------

  function currentRoute() {
    const raw = location.hash.startsWith("#/") ? location.hash.slice(1) : "/boards";
    const q = raw.indexOf("?");
    return { path: q < 0 ? raw : raw.slice(0, q), params: new URLSearchParams(q < 0 ? "" : raw.slice(q + 1)) };
  }

  function hashFor(path, params) {
    const query = new URLSearchParams(params || {}).toString();
    return "#" + path + (query ? "?" + query : "");
  }

  const VIEWS = { "/boards": boardsView, "/player": playerView, "/health": healthView };

  function render(moveFocus) {
    for (const stop of teardown.splice(0)) stop();
    const token = ++renderToken;
    const isCurrent = () => token === renderToken;
    const { path, params } = currentRoute();
    for (const link of document.querySelectorAll("nav a[data-view]")) {
      if ("/" + link.dataset.view === path) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    main.replaceChildren();
    (VIEWS[path] || notFoundView)(params, isCurrent);
    if (moveFocus) {
      const heading = main.querySelector("h1");
      if (heading) {
        heading.setAttribute("tabindex", "-1");
        heading.focus();
      }
    }
  }

  function notFoundView() {
    document.title = "Not found · Streamboard console";
    main.append(el("h1", {}, "Page not found"),
      el("p", {}, "This console has no such page. ", el("a", { href: "#/boards" }, "Go to the leaderboards"), "."));
  }

  // --- boards ---------------------------------------------------------------------------------------------

  function entryRow(entry, playerId) {
    const name = entry.user_name || entry.user_id;
    const row = el("tr", { class: entry.user_id === playerId ? "is-player" : null,
                           "aria-current": entry.user_id === playerId ? "true" : null },
      el("td", { class: "num" }, String(entry.rank)),
      el("td", { class: "name" }, el("a", { href: hashFor("/player", { id: entry.user_id }) }, name)),
      el("td", { class: "user-id" }, entry.user_id),
      el("td", { class: "num" }, fmtNumber(entry.score)));
    return row;
  }

  function entriesTable(id, captionNode) {
    const tbody = el("tbody");
    const table = el("table", { id: id },
      captionNode,
      el("thead", {}, el("tr", {}, ["Rank", "Player", "User ID", "Score"].map(
        (h, i) => el("th", { scope: "col", class: ["num", null, "user-id", "num"][i] }, h)))),
      tbody);
    const wrap = el("div", { class: "table-wrap", role: "region", tabindex: "0", "aria-labelledby": captionNode.id }, table);
    return { wrap, tbody };
  }

  function boardsView(params, isCurrent) {
    document.title = "Leaderboards · Streamboard console";
    const size = Number(params.get("size"));
    const state = {
      scope: params.get("scope") || "overall",
      window: Object.prototype.hasOwnProperty.call(WINDOWS, params.get("window")) ? params.get("window") : "all",
      size: PAGE_SIZES.includes(size) ? size : DEFAULT_PAGE_SIZE,
      page: Math.max(1, parseInt(params.get("page") || "1", 10) || 1),
    };
    let board = null;
    let loads = 0; // only the latest request may fill the table (a quick second choice overtakes the first)

    const scopeSelect = el("select", { id: "board-scope", name: "scope" }, el("option", { value: state.scope }, scopeLabel(state.scope)));
    const windowSelect = el("select", { id: "board-window", name: "window" },
      Object.entries(WINDOWS).map(([value, label]) => el("option", { value: value }, label)));
    const sizeSelect = el("select", { id: "board-size", name: "size" },
      PAGE_SIZES.map((n) => el("option", { value: String(n) }, String(n))));
    windowSelect.value = state.window;
    sizeSelect.value = String(state.size);
    const reload = el("button", { type: "button", id: "board-reload" }, "Reload");
    const meta = el("p", { id: "board-meta", class: "meta" });
    const message = el("p", { id: "board-message", hidden: true });
    const caption = el("caption", { id: "board-caption" });
    const { wrap, tbody } = entriesTable("board-table", caption);
    const prev = el("button", { type: "button", id: "page-prev" }, "Previous");
    const next = el("button", { type: "button", id: "page-next" }, "Next");
    const pageInfo = el("span", { id: "page-info" });

    main.append(
      el("h1", {}, "Leaderboards"),
      el("form", { class: "controls", "aria-label": "Choose a board", onsubmit: (e) => e.preventDefault() },
        field("Board", scopeSelect), field("Window", windowSelect), field("Rows per page", sizeSelect),
        el("div", { class: "field actions" }, reload)),
      meta, message, wrap,
      el("nav", { class: "pager", "aria-label": "Board pages" }, prev, pageInfo, next));

    function syncUrl() {
      const hash = hashFor("/boards", { scope: state.scope, window: state.window, size: String(state.size),
                                        page: String(state.page) });
      if (location.hash !== hash) history.replaceState(null, "", hash);
    }

    function showPage() {
      const entries = board ? board.entries : [];
      const pages = Math.max(1, Math.ceil(entries.length / state.size));
      state.page = Math.min(state.page, pages);
      const start = (state.page - 1) * state.size;
      const rows = entries.slice(start, start + state.size);
      tbody.replaceChildren(...rows.map((entry) => entryRow(entry, null)));
      const title = scopeLabel(state.scope) + ", " + WINDOWS[state.window];
      caption.textContent = rows.length
        ? title + ": rows " + (start + 1) + " to " + (start + rows.length) + " of " + entries.length
        : title + ": no entries";
      pageInfo.textContent = "Page " + state.page + " of " + pages;
      const focused = document.activeElement;
      prev.disabled = state.page <= 1;
      next.disabled = state.page >= pages;
      if ((focused === prev && prev.disabled) || (focused === next && next.disabled)) {
        (prev.disabled ? next : prev).focus(); // a disabled button drops the focus: keep it in the pager
      }
      syncUrl();
    }

    async function loadScopes() {
      let scopes = ["overall"];
      try {
        const body = await api("/v1/leaderboards");
        if (body && Array.isArray(body.scopes) && body.scopes.length) scopes = body.scopes.map(String);
      } catch (err) {
        // the board itself says what is wrong; the picker keeps the scope it has
      }
      if (!isCurrent()) return;
      if (!scopes.includes(state.scope)) scopes.push(state.scope);
      scopes.sort((a, b) => (a === "overall" ? -1 : b === "overall" ? 1 : a.localeCompare(b)));
      scopeSelect.replaceChildren(...scopes.map((s) => el("option", { value: s }, scopeLabel(s))));
      scopeSelect.value = state.scope;
    }

    async function load() {
      const mine = ++loads;
      const latest = () => isCurrent() && mine === loads;
      hideNotice(message);
      meta.textContent = "Loading…";
      wrap.setAttribute("aria-busy", "true");
      try {
        const body = await api(boardPath(state.scope, { window: state.window, limit: String(BOARD_FETCH_LIMIT) }));
        if (!latest()) return;
        board = body;
        meta.replaceChildren("Data as of ", timeEl(body.as_of), " · refreshed ", timeEl(body.refreshed_at),
          body.entries.length >= BOARD_FETCH_LIMIT ? " · the top " + fmtNumber(BOARD_FETCH_LIMIT) + " players" : "");
        if (!body.entries.length) {
          showNotice(message, body.refreshed_at ? "This board has no entries." :
            "No boards yet: they fill at the first refresh (Pipeline health has the refresh button).");
        }
        announce(scopeLabel(state.scope) + ", " + WINDOWS[state.window] + ": " + body.entries.length + " players");
      } catch (err) {
        if (!latest()) return;
        board = null;
        meta.textContent = "";
        showNotice(message, err.message, "error");
      } finally {
        if (latest()) {
          wrap.removeAttribute("aria-busy");
          showPage();
        }
      }
    }

    scopeSelect.addEventListener("change", () => { state.scope = scopeSelect.value; state.page = 1; load(); });
    windowSelect.addEventListener("change", () => { state.window = windowSelect.value; state.page = 1; load(); });
    sizeSelect.addEventListener("change", () => {
      const first = (state.page - 1) * state.size; // keep the first row shown on the page
      state.size = Number(sizeSelect.value);
      state.page = Math.floor(first / state.size) + 1;
      showPage();
    });
    reload.addEventListener("click", load);
    prev.addEventListener("click", () => { state.page -= 1; showPage(); announce(pageInfo.textContent); });
    next.addEventListener("click", () => { state.page += 1; showPage(); announce(pageInfo.textContent); });
    showPage();
    loadScopes();
    load();
  }

  // --- player --------------------------------------------------------------------------------------------

  function playerView(params, isCurrent) {
    const id = params.get("id") || "";
    document.title = (id ? id + " · " : "") + "Player · Streamboard console";
    const input = el("input", { id: "player-id", name: "id", type: "text", required: true, maxlength: "128",
                                autocomplete: "off", spellcheck: "false" });
    input.value = id;
    const form = el("form", { id: "player-form", class: "controls", role: "search", "aria-label": "Find a player" },
      field("User ID", input), el("div", { class: "field actions" }, el("button", { type: "submit" }, "Show player")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const wanted = input.value.trim();
      if (!wanted) return;
      const hash = hashFor("/player", { id: wanted });
      if (location.hash === hash) render(true);
      else location.hash = hash;
    });
    main.append(el("h1", {}, "Player"), form);
    if (!id) {
      main.append(el("p", { class: "hint" }, "Type a user ID, or pick a player on a board."));
      return;
    }
    const message = el("p", { id: "player-message", hidden: true });
    const out = el("div", { id: "player", "aria-busy": "true" });
    main.append(message, out);

    api("/v1/users/" + encodeURIComponent(id)).then((profile) => {
      if (!isCurrent()) return;
      out.removeAttribute("aria-busy");
      showProfile(out, profile, isCurrent);
      announce("Player " + (profile.user_name || profile.user_id) + " loaded");
    }, (err) => {
      if (!isCurrent()) return;
      out.removeAttribute("aria-busy");
      showNotice(message, err.status === 404 ? "No player " + id + ": no scores received for this user ID yet." : err.message,
        err.status === 404 ? null : "error");
    });
  }

  function showProfile(out, profile, isCurrent) {
    const categories = Object.entries(profile.categories || {}).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const ranks = Array.isArray(profile.ranks) ? profile.ranks.slice() : [];
    const windowOrder = Object.keys(WINDOWS);
    const boardKey = (r) => [r.scope === "overall" ? 0 : 1, String(r.scope), windowOrder.indexOf(r.window)];
    ranks.sort((a, b) => {
      const [x, y] = [boardKey(a), boardKey(b)];
      return x[0] - y[0] || x[1].localeCompare(y[1]) || x[2] - y[2];
    });
    const hasShares = ranks.some((r) => typeof r.of === "number" || typeof r.percentile === "number");

    out.append(
      el("section", { "aria-labelledby": "player-name" },
        el("h2", { id: "player-name" }, profile.user_name || profile.user_id),
        el("dl", { id: "player-profile", class: "facts" },
          el("div", {}, el("dt", {}, "User ID"), el("dd", { id: "profile-user-id" }, profile.user_id)),
          el("div", {}, el("dt", {}, "Name"), el("dd", { id: "profile-user-name" }, profile.user_name || "—")),
          el("div", {}, el("dt", {}, "Total score"), el("dd", { id: "profile-total" }, fmtNumber(profile.total))),
          el("div", {}, el("dt", {}, "Last update"), el("dd", { id: "profile-updated" }, timeEl(profile.updated_at)))),
        el("h3", { id: "categories-heading" }, "Categories"),
        categories.length
          ? el("div", { class: "table-wrap", role: "region", tabindex: "0", "aria-labelledby": "categories-heading" },
              el("table", { id: "player-categories" },
                el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Category"), el("th", { scope: "col", class: "num" }, "Score"))),
                el("tbody", {}, categories.map(([name, points]) =>
                  el("tr", {}, el("td", {}, name), el("td", { class: "num" }, fmtNumber(points)))))))
          : el("p", {}, "No category scores yet.")),
      el("section", { "aria-labelledby": "ranks-heading" },
        el("h2", { id: "ranks-heading" }, "Ranks"),
        ranks.length
          ? el("div", { class: "table-wrap", role: "region", tabindex: "0", "aria-labelledby": "ranks-heading" },
              el("table", { id: "player-ranks" },
                el("thead", {}, el("tr", {}, ["Board", "Window", "Rank", "Score", "Players", "Percentile"].map(
                  (h, i) => el("th", { scope: "col", class: i >= 2 ? "num" : null }, h)))),
                el("tbody", {}, ranks.map((r) => el("tr", {},
                  el("td", {}, scopeLabel(r.scope)), el("td", {}, WINDOWS[r.window] || r.window),
                  el("td", { class: "num" }, fmtNumber(r.rank)), el("td", { class: "num" }, fmtNumber(r.score)),
                  el("td", { class: "num" }, fmtNumber(r.of)), el("td", { class: "num" }, fmtPercentile(r.percentile)))))))
          : el("p", { id: "ranks-empty" }, "Not ranked on any board at the last refresh."),
        ranks.length && !hasShares
          ? el("p", { id: "ranks-note", class: "hint" },
              "Players per board and percentiles are not available from this read API yet.")
          : null),
      neighboursSection(profile.user_id, ranks, isCurrent));
  }

  function neighboursSection(userId, ranks, isCurrent) {
    const section = el("section", { "aria-labelledby": "neighbours-heading" }, el("h2", { id: "neighbours-heading" }, "Around this player"));
    if (!ranks.length) {
      section.append(el("p", { id: "neighbours-message" }, "Not on a board, so there are no neighbours to show."));
      return section;
    }
    const picker = el("select", { id: "neighbours-board", name: "board" },
      ranks.map((r, i) => el("option", { value: String(i) }, scopeLabel(r.scope) + ", " + (WINDOWS[r.window] || r.window))));
    const message = el("p", { id: "neighbours-message", hidden: true });
    const caption = el("caption", { id: "neighbours-caption" });
    const { wrap, tbody } = entriesTable("neighbours", caption);
    wrap.hidden = true;
    section.append(el("form", { class: "controls", onsubmit: (e) => e.preventDefault() }, field("Board", picker)), message, wrap);

    async function load() {
      const r = ranks[Number(picker.value)];
      hideNotice(message);
      wrap.setAttribute("aria-busy", "true");
      try {
        const body = await api(boardPath(r.scope, { window: r.window, around: userId, limit: String(NEIGHBOURS) }));
        if (!isCurrent()) return;
        // A read API without `around` ignores it and answers the top of the board: unless the player is in
        // that top, it cannot show the neighbours, and says so.
        if (!body.entries.some((e) => e.user_id === userId)) {
          wrap.hidden = true;
          showNotice(message, "Neighbours are not available: this read API does not support around= yet "
            + "(the player is ranked " + fmtNumber(r.rank) + ").");
          return;
        }
        caption.textContent = scopeLabel(r.scope) + ", " + (WINDOWS[r.window] || r.window) + ": the players around rank " + fmtNumber(r.rank);
        tbody.replaceChildren(...body.entries.map((entry) => entryRow(entry, userId)));
        wrap.hidden = false;
      } catch (err) {
        if (!isCurrent()) return;
        wrap.hidden = true;
        showNotice(message, err.status === 404 ? "Not on this board at the last refresh." : err.message,
          err.status === 404 ? null : "error");
      } finally {
        wrap.removeAttribute("aria-busy");
      }
    }

    picker.addEventListener("change", load);
    load();
    return section;
  }

  // --- pipeline health and the admin refresh --------------------------------------------------------------

  function healthView(params, isCurrent) {
    document.title = "Pipeline health · Streamboard console";
    const meta = el("p", { id: "health-meta", class: "meta" }, "Loading…");
    const message = el("p", { id: "health-message", hidden: true });
    const update = el("button", { type: "button", id: "health-update" }, "Update now");
    const cards = {};

    function card(key, label, hint) {
      const value = el("dd", { id: "health-" + key, class: "value" }, "—");
      const note = el("dd", { id: "health-" + key + "-note", class: "hint" }, hint);
      cards[key] = { value, note, box: el("div", { class: "card" }, el("dt", {}, label), value, note) };
      return cards[key].box;
    }

    const figures = el("dl", { id: "health-figures", class: "cards" },
      card("events", "Events per minute", "accepted by the ingest API, last 5 minutes"),
      card("backlog", "Stream backlog", "records the router has not taken yet"),
      card("dlq", "DLQ depth", "events waiting in the dead-letter queue for a redrive"),
      card("bad", "Bad events", "rejected or unprocessable events kept in the last 24 hours"),
      card("last-refresh", "Last refresh", "when the boards were last replaced"),
      card("freshness", "Data freshness", "how old the data on the boards is"));

    const keyInput = el("input", { id: "admin-key", name: "admin-key", type: "password", required: true,
                                   autocomplete: "off", spellcheck: "false" });
    const refreshButton = el("button", { type: "submit", id: "refresh-button" }, "Refresh boards now");
    const result = el("p", { id: "refresh-result", role: "status" });
    const refreshForm = el("form", { id: "refresh-form", class: "controls", method: "post", "aria-describedby": "refresh-about" },
      field("Admin key", keyInput, "sent once with this request, never stored"),
      el("div", { class: "field actions" }, refreshButton));

    main.append(
      el("h1", {}, "Pipeline health"),
      el("div", { class: "toolbar" }, meta, update),
      message, figures,
      el("section", { "aria-labelledby": "refresh-heading", class: "admin" },
        el("h2", { id: "refresh-heading" }, "Refresh the boards"),
        el("p", { id: "refresh-about" }, "Runs a refresh now (the local stack first drains the pipeline, so the boards "
          + "include every event accepted before it). Needs an admin key."),
        refreshForm, result));

    function set(key, value, attention, note) {
      const c = cards[key];
      c.value.replaceChildren(value);
      c.box.classList.toggle("attention", Boolean(attention));
      if (attention) c.value.append(el("span", { class: "badge" }, "needs attention"));
      if (note !== undefined) c.note.textContent = note;
    }

    async function refreshFigures() {
      try {
        const h = await api("/v1/health");
        if (!isCurrent()) return;
        hideNotice(message);
        meta.replaceChildren("Figures as of ", timeEl(h.as_of), " · updated every " + HEALTH_POLL_MS / 1000 + " s");
        set("events", fmtNumber(h.events_per_minute === null ? null : Math.round(h.events_per_minute)));
        const backlog = h.stream_backlog || {};
        const age = typeof backlog.age_seconds === "number" ? fmtDuration(backlog.age_seconds) : null;
        if (typeof backlog.records === "number") {
          set("backlog", fmtNumber(backlog.records), backlog.age_seconds > 300,
            "records the router has not taken yet" + (age ? "; the oldest has waited " + age : ""));
        } else {
          set("backlog", age || "—", backlog.age_seconds > 300,
            "how long the oldest record has waited for the router (no record count here)");
        }
        set("dlq", fmtNumber(h.dlq_depth), h.dlq_depth > 0);
        set("bad", fmtNumber(h.bad_events), false);
        set("last-refresh", h.last_refresh ? timeEl(h.last_refresh, true) : "never", !h.last_refresh);
        set("freshness", fmtDuration(h.freshness_seconds), h.freshness_seconds > 2 * 3600);
      } catch (err) {
        if (!isCurrent()) return;
        showNotice(message, err.message, "error");
      }
    }

    refreshForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      let key = keyInput.value;
      keyInput.value = ""; // the key lives only in this function call
      if (!key) return;
      refreshButton.disabled = true;
      result.className = "";
      result.textContent = "Refreshing… this can take a while.";
      try {
        const summary = await api("/v1/admin/refresh", { method: "POST", headers: { accept: "application/json", [ADMIN_KEY_HEADER]: key } });
        key = null;
        const s = summary || {};
        result.textContent = Array.isArray(s.query_ids)
          ? "Refresh started (" + s.query_ids.length + " query): the boards update when it finishes."
          : "Boards refreshed" + (typeof s.boards === "number" ? ": " + fmtNumber(s.boards) + " boards written" : "")
            + (typeof s.seconds === "number" ? " in " + fmtDuration(s.seconds) : "") + ".";
        refreshFigures();
      } catch (err) {
        result.className = "error";
        result.textContent = err.status === 401 ? "Refused: that is not an admin key." : err.message;
      } finally {
        key = null;
        refreshButton.disabled = false;
      }
    });

    update.addEventListener("click", refreshFigures);
    const timer = setInterval(() => { if (!document.hidden) refreshFigures(); }, HEALTH_POLL_MS);
    teardown.push(() => clearInterval(timer));
    refreshFigures();
  }

  // --- start ----------------------------------------------------------------------------------------------

  document.getElementById("skip-link").addEventListener("click", (event) => {
    event.preventDefault(); // the fragment is the router's: move the focus instead
    main.focus();
  });
  window.addEventListener("hashchange", () => render(true));
  render(false);
})();
