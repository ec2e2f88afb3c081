// The page of `cf-ref full serve`: one WebSocket to /ws (protocol in full/serve/protocol.py).
// Frames arrive as binary messages after each "block" message; they are drawn at the video's fps from a small
// buffer (drawn at once when the buffer is empty), so playback is smooth while blocks arrive in bursts.
"use strict";
const $ = (id) => document.getElementById(id);
const canvas = $("screen"), ctx = canvas.getContext("2d");
const state = {
  ws: null, info: null, playing: false, pending: 0, queue: [], drawn: 0, lastDraw: 0,
  startSent: 0, firstFrameSeen: false, switchSent: 0, switchIndex: 0, promptIndex: 0,
  recvTimes: [], modelFps: null,
};
window.cfStats = state;  // read by the browser test

function status(text, kind = "") { const s = $("status"); s.textContent = text; s.className = kind; }
function ms(x) { return `${Math.round(x)} ms`; }
function controls() {
  $("start").disabled = state.playing || !state.info;
  $("stop").disabled = !state.playing;
  $("switch").disabled = !state.playing;
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "blob";
  ws.onmessage = (ev) => (typeof ev.data === "string" ? onText(JSON.parse(ev.data)) : onFrame(ev.data));
  ws.onclose = () => { state.playing = false; state.info = null; controls(); status("disconnected — reload the page", "error"); };
  state.ws = ws;
}

function onText(msg) {
  switch (msg.type) {
    case "hello":
      state.info = msg;
      canvas.width = msg.width; canvas.height = msg.height;
      $("model").textContent = `${msg.model} · ${msg.width}×${msg.height} · ${msg.block_size} latent frame(s) per block · ${msg.fps} fps`;
      $("seed").max = msg.limits.max_seed;
      $("prompt").maxLength = msg.limits.max_prompt_chars;
      status("ready"); controls(); break;
    case "queued": status(`waiting for the model (position ${msg.position})…`, "busy"); break;
    case "busy": state.playing = false; controls(); status(msg.message, "busy"); break;
    case "started": state.confirmed = true; status(`playing: ${msg.prompt}`); break;
    case "block":
      state.pending += msg.frames;
      state.promptIndex = msg.prompt_index;
      const secs = ((msg.dit_ms || 0) + (msg.decode_ms || 0)) / 1000;
      if (secs > 0) state.modelFps = msg.frames / secs;
      if (state.switchSent && msg.prompt_index >= state.switchIndex) {
        $("lat-switch").textContent = ms(performance.now() - state.switchSent);
        state.switchSent = 0;
        status(`playing: ${msg.prompt}`);
      }
      break;
    case "stopped": state.playing = false; state.confirmed = false; controls(); status(`stopped (${msg.reason})`); break;
    case "error":
      if (!state.confirmed) state.playing = false;  // the start itself was refused
      status(msg.message, "error"); controls(); break;
  }
}

async function onFrame(blob) {
  const now = performance.now();
  state.recvTimes.push(now);
  while (state.recvTimes.length && now - state.recvTimes[0] > 2000) state.recvTimes.shift();
  state.pending = Math.max(0, state.pending - 1);
  state.queue.push(await createImageBitmap(blob));
  if (!state.firstFrameSeen && state.startSent) {
    state.firstFrameSeen = true;
    $("lat-start").textContent = ms(now - state.startSent);
  }
}

function tick(now) {
  const fps = state.info ? state.info.fps : 16;
  if (state.queue.length && now - state.lastDraw >= 1000 / fps - 2) {
    const frame = state.queue.shift();
    ctx.drawImage(frame, 0, 0, canvas.width, canvas.height);
    frame.close();
    state.drawn += 1; state.lastDraw = now;
    $("frames").textContent = state.drawn;
  }
  const span = state.recvTimes.length > 1 ? (state.recvTimes.at(-1) - state.recvTimes[0]) / 1000 : 0;
  $("fps-recv").textContent = span > 0 ? ((state.recvTimes.length - 1) / span).toFixed(1) : "–";
  $("fps-model").textContent = state.modelFps ? state.modelFps.toFixed(1) : "–";
  requestAnimationFrame(tick);
}

function send(obj) { state.ws.send(JSON.stringify(obj)); }

$("start").onclick = () => {
  const seed = Number($("seed").value);
  state.playing = true; state.confirmed = false; state.firstFrameSeen = false; state.startSent = performance.now();
  state.switchIndex = 0; state.promptIndex = 0;
  $("lat-start").textContent = "…"; $("lat-switch").textContent = "–";
  controls();
  send({
    type: "start", prompt: $("prompt").value, steps: Number($("steps").value),
    first_block_steps: $("first4").checked ? 4 : null, seed: Number.isInteger(seed) ? seed : -1,
    recache: $("recache").checked,
  });
};
$("stop").onclick = () => send({ type: "stop" });
$("switch").onclick = () => {
  state.switchSent = performance.now(); state.switchIndex = state.promptIndex + 1;
  $("lat-switch").textContent = "…";
  send({ type: "prompt", prompt: $("prompt").value, recache: $("recache").checked });
};
$("steps").onchange = () => { if (state.playing) send({ type: "steps", steps: Number($("steps").value) }); };

connect();
requestAnimationFrame(tick);
