// Triage worklist page: no build step, no framework. Reads the same JSON API as integrators.
//
// The token is asked for once and kept in sessionStorage (this tab only). It travels in the
// Authorization header, including for live updates (a streaming fetch of /api/v1/events, since
// EventSource cannot send headers) and key images (fetched as blobs), never in a URL.
// Every value from the server is written with textContent, never parsed as HTML.
"use strict";

(() => {
  const API = "/api/v1";
  const TOKEN_KEY = "triage.token";
  const LABELS = { stat: "STAT", urgent: "URGENT", not_analysed: "NOT ANALYSED", routine: "ROUTINE" };
  const THUMB_PX = 96;
  const FULL_PX = 512;

  const $ = (id) => document.getElementById(id);
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    me: null,
    studies: [],
    fetchedAt: 0, // performance.now() when the list arrived; waiting times tick from there
    thumbs: new Map(), // "uid|sr|finding" -> object URL
    stream: null, // AbortController of the event stream
    refreshQueued: false,
    overrideUid: null,
  };

  class Unauthorised extends Error {}

  async function api(path, options = {}) {
    const headers = { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) };
    const response = await fetch(API + path, { ...options, headers, cache: "no-store" });
    if (response.status === 401) {
      signOut("The token was not accepted. Enter it again.");
      throw new Unauthorised();
    }
    return response;
  }

  async function detail(response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return body.detail;
      if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
    } catch (_) { /* not JSON */ }
    return `HTTP ${response.status}`;
  }

  // ---- sign in / out ----------------------------------------------------------------------

  async function signIn(token) {
    state.token = token;
    const response = await fetch(`${API}/whoami`, {
      headers: { Authorization: `Bearer ${token}` }, cache: "no-store",
    });
    if (!response.ok) {
      state.token = "";
      sessionStorage.removeItem(TOKEN_KEY);
      $("login-error").textContent = response.status === 401
        ? "This token is not valid." : `Sign-in failed: ${await detail(response)}`;
      return;
    }
    state.me = await response.json();
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("login-error").textContent = "";
    $("login").hidden = true;
    $("board").hidden = false;
    $("session").hidden = false;
    $("who").textContent = `${state.me.user} (${state.me.role})`;
    await load();
    listen();
  }

  function signOut(message) {
    state.token = "";
    state.me = null;
    sessionStorage.removeItem(TOKEN_KEY);
    if (state.stream) state.stream.abort();
    for (const url of state.thumbs.values()) URL.revokeObjectURL(url);
    state.thumbs.clear();
    $("rows").replaceChildren();
    $("board").hidden = true;
    $("session").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").focus();
  }

  // ---- the list ---------------------------------------------------------------------------

  async function load() {
    try {
      const response = await api("/studies");
      if (!response.ok) {
        $("status").textContent = `Could not load the worklist: ${await detail(response)}`;
        return;
      }
      const page = await response.json();
      state.studies = page.studies;
      state.fetchedAt = performance.now();
      render();
      $("status").textContent = `${page.count} studies · updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      if (!(error instanceof Unauthorised)) $("status").textContent = "The server cannot be reached.";
    }
  }

  function scheduleRefresh() {
    if (state.refreshQueued) return;
    state.refreshQueued = true;
    setTimeout(() => { state.refreshQueued = false; load(); }, 100);
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function patientName(pn) {
    const [family, given, middle] = (pn || "").split("^");
    return [family, [given, middle].filter(Boolean).join(" ")].filter(Boolean).join(", ") || "—";
  }

  function formatWaiting(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const pad = (n) => String(n).padStart(2, "0");
    return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
  }

  function canReview() {
    return Boolean(state.me && state.me.rights.includes("review"));
  }

  function priorityCell(study) {
    const cell = el("td", {}, el("span", {
      class: `flag flag-${study.priority}`, text: LABELS[study.priority] || study.priority,
    }));
    if (study.ai_priority && study.unverified) {
      cell.append(el("br"), el("span", {
        class: "badge unverified", text: "unverified AI",
        title: "AI result not yet acknowledged by a radiologist",
      }));
    } else if (study.acknowledged) {
      cell.append(el("br"), el("span", {
        class: "badge verified", text: `✓ acknowledged by ${study.acknowledged_by}`,
      }));
    }
    if (study.overridden) {
      cell.append(el("br"), el("span", {
        class: "badge overridden", text: "overridden",
        title: `AI/order priority: ${LABELS[study.effective_priority] || study.effective_priority}`,
      }));
    }
    return cell;
  }

  function findingsCell(study) {
    const models = study.models.map((m) => `${m.name} ${m.version}`).join(", ");
    return el("td", {},
      document.createTextNode(study.findings_summary || (study.ai_priority ? "" : "awaiting analysis")),
      models ? el("small", { text: models }) : null);
  }

  function thumbCell(study) {
    const cell = el("td");
    if (!study.findings.length) {
      cell.textContent = "—";
      return cell;
    }
    const first = study.findings[0];
    const img = el("img", {
      class: "thumb", width: String(THUMB_PX), height: String(THUMB_PX), tabindex: "0",
      role: "button", alt: `Key image of finding 1: ${first.text}. Activate to enlarge.`,
    });
    img.addEventListener("click", () => openImage(study, first));
    img.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") openImage(study, first); });
    cell.append(img);
    loadImage(study, first.index, THUMB_PX).then((url) => { if (url) img.src = url; });
    return cell;
  }

  function actionsCell(study) {
    const cell = el("td");
    const box = el("div", { class: "actions" });
    const accession = study.accession_number || "this study";
    const ack = el("button", {
      type: "button", class: "ack", text: "Acknowledge",
      "aria-label": `Acknowledge AI result for accession ${accession}`,
    });
    ack.disabled = !canReview() || study.acknowledged || !study.ai_priority;
    ack.addEventListener("click", () => acknowledge(study, ack));
    const ov = el("button", {
      type: "button", class: "override", text: "Override…",
      "aria-label": `Override priority for accession ${accession}`,
    });
    ov.disabled = !canReview();
    ov.addEventListener("click", () => openOverride(study));
    box.append(ack, ov);
    cell.append(box);
    return cell;
  }

  function rowOf(study) {
    const waiting = el("td", { class: "waiting", text: formatWaiting(study.waiting_s) });
    waiting.dataset.base = String(study.waiting_s);
    const meta = [study.patient_id, study.accession_number && `Acc ${study.accession_number}`]
      .filter(Boolean).join(" · ");
    const date = /^\d{8}$/.test(study.study_date)
      ? `${study.study_date.slice(0, 4)}-${study.study_date.slice(4, 6)}-${study.study_date.slice(6)}`
      : study.study_date;
    const studyMeta = [study.modalities.join(", "), date].filter(Boolean).join(" · ");
    const tr = el("tr", { class: `row prio-${study.priority}` },
      priorityCell(study),
      waiting,
      el("td", {}, document.createTextNode(patientName(study.patient_name)),
        meta ? el("small", { text: meta }) : null),
      el("td", {}, document.createTextNode(study.study_description || "—"),
        studyMeta ? el("small", { text: studyMeta }) : null),
      findingsCell(study),
      thumbCell(study),
      el("td", {}, document.createTextNode(study.state.replace("_", " ")),
        study.reason ? el("small", { text: study.reason }) : null),
      actionsCell(study));
    tr.dataset.uid = study.study_uid;
    tr.dataset.priority = study.priority;
    return tr;
  }

  function render() {
    $("rows").replaceChildren(...state.studies.map(rowOf));
    $("empty").hidden = state.studies.length > 0;
  }

  function tick() {
    const elapsed = (performance.now() - state.fetchedAt) / 1000;
    for (const cell of document.querySelectorAll("td.waiting")) {
      cell.textContent = formatWaiting(Number(cell.dataset.base) + elapsed);
    }
  }

  // ---- key images -------------------------------------------------------------------------

  async function loadImage(study, index, size) {
    const key = `${study.study_uid}|${study.sr_sop_uid || ""}|${study.findings_summary}|${index}|${size}`;
    if (state.thumbs.has(key)) return state.thumbs.get(key);
    const path = `/studies/${encodeURIComponent(study.study_uid)}/key-image.png?finding=${index}&size=${size}`;
    try {
      const response = await api(path);
      if (!response.ok) return null;
      const url = URL.createObjectURL(await response.blob());
      state.thumbs.set(key, url);
      return url;
    } catch (_) {
      return null;
    }
  }

  async function openImage(study, finding) {
    $("img-title").textContent = `Key image: ${finding.text}`;
    const img = $("img-full");
    img.alt = `Finding ${finding.index + 1}: ${finding.text}`;
    img.removeAttribute("src");
    $("image-dialog").showModal();
    const url = await loadImage(study, finding.index, FULL_PX);
    if (url) img.src = url;
  }

  // ---- actions ----------------------------------------------------------------------------

  async function acknowledge(study, button) {
    button.disabled = true;
    try {
      const response = await api(`/studies/${encodeURIComponent(study.study_uid)}/acknowledge`, { method: "POST" });
      $("status").textContent = response.ok ? "Acknowledged." : `Not acknowledged: ${await detail(response)}`;
      if (!response.ok) button.disabled = false;
      await load();
    } catch (error) {
      if (!(error instanceof Unauthorised)) button.disabled = false;
    }
  }

  function openOverride(study) {
    state.overrideUid = study.study_uid;
    $("ov-study").textContent = `${patientName(study.patient_name)} · ${study.study_description || study.accession_number || ""} · now ${LABELS[study.priority] || study.priority}`;
    $("ov-priority").value = study.priority === "stat" ? "urgent" : "stat";
    $("ov-reason").value = "";
    $("ov-error").textContent = "";
    $("override-dialog").showModal();
    $("ov-reason").focus();
  }

  async function saveOverride(event) {
    event.preventDefault();
    const reason = $("ov-reason").value.trim();
    if (!reason) {
      $("ov-error").textContent = "A reason is required.";
      $("ov-reason").focus();
      return;
    }
    const body = JSON.stringify({ priority: $("ov-priority").value, reason });
    try {
      const response = await api(`/studies/${encodeURIComponent(state.overrideUid)}/override`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body,
      });
      if (!response.ok) {
        $("ov-error").textContent = await detail(response);
        return;
      }
      $("override-dialog").close();
      $("status").textContent = "Priority overridden.";
      await load();
    } catch (_) { /* signed out */ }
  }

  // ---- live updates (server-sent events over a streaming fetch) ------------------------------

  function setLive(on) {
    const badge = $("live");
    badge.textContent = on ? "live" : "reconnecting…";
    badge.className = `live ${on ? "on" : "off"}`;
  }

  function dispatch(block) {
    let event = "message";
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
    }
    if (event === "worklist") scheduleRefresh();
  }

  async function listen() {
    if (state.stream) state.stream.abort();
    const control = new AbortController();
    state.stream = control;
    while (state.token && !control.signal.aborted) {
      try {
        const response = await fetch(`${API}/events`, {
          headers: { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" },
          cache: "no-store", signal: control.signal,
        });
        if (response.status === 401) { signOut("The token was not accepted. Enter it again."); return; }
        if (!response.ok || !response.body) throw new Error(`events: HTTP ${response.status}`);
        setLive(true);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
            dispatch(buffer.slice(0, end));
            buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
          }
        }
      } catch (_) {
        if (control.signal.aborted) return;
      }
      setLive(false);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      scheduleRefresh(); // catch up on anything missed while disconnected
    }
  }

  // ---- wiring -----------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      if (!token) { $("login-error").textContent = "Enter your access token."; return; }
      signIn(token);
    });
    $("signout").addEventListener("click", () => signOut(""));
    $("override-form").addEventListener("submit", saveOverride);
    $("ov-cancel").addEventListener("click", () => $("override-dialog").close());
    $("img-close").addEventListener("click", () => $("image-dialog").close());
    setInterval(tick, 1000);
    if (state.token) signIn(state.token); else $("token").focus();
  });
})();
