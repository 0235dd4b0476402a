"use strict";

// The participant page: consent, forced-choice trials, completion code.
// State that must survive a reload (participant id and token, votes not yet acknowledged) lives in
// localStorage; the server is the authority on which trials are still open.

const config = JSON.parse(document.getElementById("config").textContent);
const params = new URLSearchParams(location.search);
const externalId = params.get("PROLIFIC_PID") || params.get("pid") || null;
// The server resolved which study this page is for (the link's ?study=, or the only one).
const studyName = config.study;
const storageKey = `colorizer-study:${params.get("study") || ""}:${externalId || ""}`;

const $ = (selector) => document.querySelector(selector);

function show(sectionId) {
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.id !== sectionId;
  }
}

function fail(message) {
  $("#failure-message").textContent = message;
  show("failure");
}

function loadSaved() {
  try {
    return JSON.parse(localStorage.getItem(storageKey)) || { pending: [] };
  } catch {
    return { pending: [] };
  }
}

function save(saved) {
  localStorage.setItem(storageKey, JSON.stringify(saved));
}

function randomId() {
  // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class FatalError extends Error {
  constructor(message, reason = null) {
    super(message);
    this.reason = reason;
  }
}

const TOKEN_HEADER = "X-Participant-Token";

function connectionMessage(failingForMs) {
  if (failingForMs < config.patienceMs) return "Connection problem, retrying…";
  return "Your answers are not lost: they are kept in this browser until the server takes them. " +
    "Please keep this page open; it keeps trying by itself.";
}

// Retries network failures and 5xx forever (with backoff, after Retry-After when given);
// returns null on the statuses in `tolerate`.
async function api(method, url, body, { token = null, tolerate = [] } = {}) {
  const failingSince = performance.now();
  for (let attempt = 0; ; attempt++) {
    const headers = body ? { "Content-Type": "application/json" } : {};
    if (token) headers[TOKEN_HEADER] = token;
    let response;
    try {
      response = await fetch(url, { method, headers, body: body ? JSON.stringify(body) : undefined });
    } catch {
      response = null;
    }
    if (response && response.ok) {
      $(".status").textContent = "";
      return response.json();
    }
    if (response && tolerate.includes(response.status)) return null;
    if (response && response.status < 500) {
      const detail = await response.json().catch(() => ({}));
      throw new FatalError(detail.error || `request failed (${response.status})`, detail.reason || null);
    }
    $(".status").textContent = connectionMessage(performance.now() - failingSince);
    const retryAfterMs = 1000 * (Number(response && response.headers.get("Retry-After")) || 0);
    await sleep(Math.max(retryAfterMs, Math.min(5000, 250 * 2 ** attempt)));
  }
}

function preload(url) {
  const image = new Image();
  image.alt = "";
  image.src = url;
  return image.decode().then(() => image);
}

function preloadTrial(trial) {
  return Promise.all([preload(trial.left), preload(trial.right)]);
}

// The progress of the counted trials: practice trials (the first `state.practice`) are not counted.
function counted(state) {
  const practice = state.practice || 0;
  return { answered: Math.max(0, state.answered - practice), total: state.total - practice };
}

function setProgress(state, inPractice) {
  const { answered, total } = counted(state);
  $(".progress-fill").style.width = inPractice ? "0%" : `${(100 * answered) / Math.max(total, 1)}%`;
  $(".progress").setAttribute("aria-valuemax", total);
  $(".progress").setAttribute("aria-valuenow", answered);
  $(".progress-text").textContent = inPractice ? "Practice" : `${answered} / ${total}`;
}

// A screen between trials (the end of the practice, a break) that waits for Continue (or Enter).
function pause(sectionId, message) {
  $(`#${sectionId} .pause-message`).textContent = message;
  show(sectionId);
  const button = $(`#${sectionId} button`);
  button.focus();
  return new Promise((resolve) => {
    const done = () => {
      document.removeEventListener("keydown", onKey);
      button.onclick = null;
      show("trial");
      resolve();
    };
    const onKey = (event) => {
      if (event.key === "Enter" || event.key === " ") done();
    };
    document.addEventListener("keydown", onKey);
    button.onclick = done;
  });
}

// A fixation cross where the pair will appear, for config.fixationMs, so every pair is looked at
// from the same point and none appears by surprise.
async function fixate() {
  $("#frame-left").replaceChildren();
  $("#frame-right").replaceChildren();
  $(".fixation").hidden = false;
  await sleep(config.fixationMs);
  $(".fixation").hidden = true;
}

// Resolves with "left" or "right" from a button or an arrow key.
function awaitChoice() {
  const buttons = document.querySelectorAll(".choice");
  return new Promise((resolve) => {
    const finish = (choice) => {
      document.removeEventListener("keydown", onKey);
      buttons.forEach((button) => {
        button.disabled = true;
        button.onclick = null;
      });
      resolve(choice);
    };
    const onKey = (event) => {
      if (event.repeat) return;
      if (event.key === "ArrowLeft") finish("left");
      if (event.key === "ArrowRight") finish("right");
    };
    document.addEventListener("keydown", onKey);
    buttons.forEach((button) => {
      button.disabled = false;
      button.onclick = () => finish(button.dataset.choice);
    });
  });
}

// The start time of the next frame (the pictures changed before it are painted in it).
const nextFrame = () => new Promise((resolve) => requestAnimationFrame(resolve));

// Shows the pair, removes the pictures from the document after the exposure (or at the answer),
// and measures: the response time and the exposure from the frames that showed and removed the
// pictures, and whether the page lost focus in between (another tab or window).
async function showTrial([leftImage, rightImage]) {
  // The frames take the pictures' shape (both sides of a pair are the same size) and keep it after
  // the pictures are removed, so nothing moves under the finger.
  for (const frame of document.querySelectorAll(".frame")) {
    frame.style.aspectRatio = `${leftImage.naturalWidth} / ${leftImage.naturalHeight}`;
  }
  let lostFocus = false;
  const onFocusLost = () => {
    if (document.hidden || !document.hasFocus()) lostFocus = true;
  };
  window.addEventListener("blur", onFocusLost);
  document.addEventListener("visibilitychange", onFocusLost);
  $("#frame-left").replaceChildren(leftImage);
  $("#frame-right").replaceChildren(rightImage);
  const shownAt = await nextFrame();
  let hidden = null;
  const hide = () => {
    if (!hidden) {
      $("#frame-left").replaceChildren();
      $("#frame-right").replaceChildren();
      hidden = nextFrame();
    }
    return hidden;
  };
  const hideTimer = setTimeout(hide, config.exposureMs);
  const choice = await awaitChoice();
  const rtMs = Math.round(performance.now() - shownAt);
  clearTimeout(hideTimer);
  const hiddenAt = await hide();
  window.removeEventListener("blur", onFocusLost);
  document.removeEventListener("visibilitychange", onFocusLost);
  return { choice, rtMs, exposureMs: Math.round(hiddenAt - shownAt), lostFocus };
}

// Sends a vote kept in localStorage until acknowledged; null (after a 409, or a status in
// `tolerate`) means the trial was already answered, e.g. in another tab, and the vote is dropped.
async function sendVote(saved, vote, tolerate = [409]) {
  const result = await api("POST", "/api/votes", vote, { token: saved.token, tolerate });
  saved.pending = saved.pending.filter((pending) => pending.client_vote_id !== vote.client_vote_id);
  save(saved);
  return result;
}

// The server releases one trial at a time: each answer lists the trial to show now and the next
// one, which is preloaded meanwhile.
async function runTrials(saved, state) {
  show("trial");
  const loading = new Map();
  const load = (trial) => {
    if (!loading.has(trial.trial_id)) loading.set(trial.trial_id, preloadTrial(trial));
    return loading.get(trial.trial_id);
  };
  let previous = null; // the trial answered just before, on this page (none after a reload)
  while (state.trials.length) {
    const [current, next] = state.trials;
    const progress = counted(state);
    if (previous && previous.practice && !current.practice) {
      await pause("practice-end", `From now on your answers count: ${progress.total} pairs to go.`);
    } else if (previous && !previous.practice && config.breakEvery && progress.answered % config.breakEvery === 0) {
      await pause("break", `${progress.answered} of ${progress.total} pairs done. Rest your eyes for a moment.`);
    }
    previous = current;
    setProgress(state, current.practice);
    $(".practice-note").hidden = !current.practice;
    const images = await load(current);
    loading.delete(current.trial_id);
    if (next) load(next);
    await fixate();
    const measured = await showTrial(images);
    const vote = {
      participant_id: saved.participantId,
      trial_id: current.trial_id,
      choice: measured.choice,
      rt_ms: measured.rtMs,
      exposure_ms: measured.exposureMs,
      lost_focus: measured.lostFocus,
      client_vote_id: randomId(),
    };
    saved.pending.push(vote);
    save(saved);
    state = (await sendVote(saved, vote)) ||
      (await api("GET", `/api/participants/${saved.participantId}`, null, { token: saved.token }));
  }
  setProgress(state, false);
  $("#completion-code").textContent = state.completion_code || "";
  $("#code-given").hidden = Boolean(state.completion_withheld);
  $("#code-withheld").hidden = !state.completion_withheld;
  if (state.completion_url) {
    // Back to the recruiting site with the code, as Prolific expects; the link is there if this fails.
    $("#redirect-link").href = state.completion_url;
    $("#redirect").hidden = false;
    setTimeout(() => location.assign(state.completion_url), 1500);
  }
  // On a shared computer the next person must not land on this page for good.
  $("#new-participant").hidden = externalId !== null;
  $("#new-participant").onclick = () => {
    localStorage.removeItem(storageKey);
    location.reload();
  };
  show("done");
}

function startAfresh() {
  localStorage.removeItem(storageKey);
  return askConsent(loadSaved());
}

async function resume(saved) {
  // Kept from before participant tokens: the server would refuse it.
  if (!saved.token) return startAfresh();
  // A participant the server no longer knows (401/403/404, e.g. a database restored from a backup)
  // cannot take the votes: they are dropped, and the state request below starts afresh.
  for (const vote of [...saved.pending]) await sendVote(saved, vote, [401, 403, 404, 409]);
  const state = await api("GET", `/api/participants/${saved.participantId}`, null, {
    token: saved.token,
    tolerate: [401, 403, 404],
  });
  // The participant is gone from the server (e.g. a new database): start afresh.
  if (state === null) return startAfresh();
  return runTrials(saved, state);
}

function askConsent(saved) {
  document.querySelectorAll(".exposure-seconds").forEach((span) => {
    span.textContent = String(config.exposureMs / 1000);
  });
  const check = $("#consent-check");
  const start = $("#start");
  check.onchange = () => (start.disabled = !check.checked);
  start.disabled = !check.checked;
  show("consent");
  return new Promise((resolve, reject) => {
    start.onclick = async () => {
      start.disabled = true;
      try {
        // Kept before sending: an enrolment resent after a lost answer gets the same participant.
        saved.enrolmentKey = saved.enrolmentKey || randomId();
        save(saved);
        const state = await api("POST", "/api/participants", {
          external_id: externalId,
          study: studyName,
          client_enrolment_id: saved.enrolmentKey,
          prolific_study_id: params.get("STUDY_ID") || null,
          prolific_session_id: params.get("SESSION_ID") || null,
          viewport_width: Math.round(window.innerWidth),
          viewport_height: Math.round(window.innerHeight),
        });
        saved.participantId = state.participant_id;
        saved.token = state.participant_token;
        save(saved);
        resolve(runTrials(saved, state));
      } catch (error) {
        reject(error);
      }
    };
  });
}

async function main() {
  const saved = loadSaved();
  try {
    await (saved.participantId ? resume(saved) : askConsent(saved));
  } catch (error) {
    if (error instanceof FatalError && error.reason === "study_full") show("full");
    else fail(error instanceof FatalError ? error.message : `Unexpected error: ${error}`);
  }
}

main();
