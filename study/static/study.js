"use strict";

// The participant page: consent, forced-choice trials, completion code.
// State that must survive a reload (participant id, votes not yet acknowledged) lives in
// localStorage; the server is the authority on which trials are still open.

const config = JSON.parse(document.getElementById("config").textContent);
const params = new URLSearchParams(location.search);
const externalId = params.get("PROLIFIC_PID") || params.get("pid") || null;
const studyName = params.get("study") || null;
const storageKey = `colorizer-study:${studyName || ""}:${externalId || ""}`;

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

class FatalError extends Error {}

// Retries network failures and 5xx forever (with backoff); returns null on 404/409 when allowed.
async function api(method, url, body, { tolerate = [] } = {}) {
  for (let attempt = 0; ; attempt++) {
    let response;
    try {
      response = await fetch(url, {
        method,
        headers: body ? { "Content-Type": "application/json" } : {},
        body: body ? JSON.stringify(body) : undefined,
      });
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
      throw new FatalError(detail.error || `request failed (${response.status})`);
    }
    $(".status").textContent = "Connection problem, retrying…";
    await sleep(Math.min(5000, 250 * 2 ** attempt));
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

function setProgress(answered, total) {
  $(".progress-fill").style.width = `${(100 * answered) / Math.max(total, 1)}%`;
  $(".progress").setAttribute("aria-valuemax", total);
  $(".progress").setAttribute("aria-valuenow", answered);
  $(".progress-text").textContent = `${answered} / ${total}`;
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

async function showTrial([leftImage, rightImage]) {
  const pair = $(".pair");
  pair.classList.remove("hidden-images");
  $("#frame-left").replaceChildren(leftImage);
  $("#frame-right").replaceChildren(rightImage);
  // Time from the frame in which both pictures are first painted.
  const shownAt = await new Promise((resolve) => requestAnimationFrame(() => resolve(performance.now())));
  const hideTimer = setTimeout(() => pair.classList.add("hidden-images"), config.exposureMs);
  const choice = await awaitChoice();
  const rtMs = Math.round(performance.now() - shownAt);
  clearTimeout(hideTimer);
  pair.classList.add("hidden-images");
  return { choice, rtMs };
}

// Sends a vote kept in localStorage until acknowledged; a 409 means it is already answered.
async function sendVote(saved, vote) {
  const result = await api("POST", "/api/votes", vote, { tolerate: [409] });
  saved.pending = saved.pending.filter((pending) => pending.client_vote_id !== vote.client_vote_id);
  save(saved);
  return result;
}

async function runTrials(saved, state) {
  show("trial");
  let { answered, total } = state;
  let completionCode = state.completion_code;
  setProgress(answered, total);
  let next = state.trials.length ? preloadTrial(state.trials[0]) : null;
  for (let i = 0; i < state.trials.length; i++) {
    const images = await next;
    next = i + 1 < state.trials.length ? preloadTrial(state.trials[i + 1]) : null;
    const { choice, rtMs } = await showTrial(images);
    const vote = {
      participant_id: saved.participantId,
      trial_id: state.trials[i].trial_id,
      choice,
      rt_ms: rtMs,
      client_vote_id: randomId(),
    };
    saved.pending.push(vote);
    save(saved);
    const result = await sendVote(saved, vote);
    answered = result ? result.answered : answered + 1;
    completionCode = result ? result.completion_code : completionCode;
    setProgress(answered, total);
  }
  if (!completionCode) {
    // The last vote was already stored (e.g. from another tab): ask for the current state.
    const latest = await api("GET", `/api/participants/${saved.participantId}`);
    if (latest.trials.length) return runTrials(saved, latest);
    completionCode = latest.completion_code;
  }
  $("#completion-code").textContent = completionCode;
  show("done");
}

async function resume(saved) {
  for (const vote of [...saved.pending]) await sendVote(saved, vote);
  const state = await api("GET", `/api/participants/${saved.participantId}`, null, { tolerate: [404] });
  if (state === null) {
    // The participant is gone from the server (e.g. a new database): start afresh.
    localStorage.removeItem(storageKey);
    return askConsent(loadSaved());
  }
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
        const state = await api("POST", "/api/participants", { external_id: externalId, study: studyName });
        saved.participantId = state.participant_id;
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
    fail(error instanceof FatalError ? error.message : `Unexpected error: ${error}`);
  }
}

main();
