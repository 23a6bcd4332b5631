// edgenn demo page: plain ES module, no dependencies. Talks only to the gateway that serves it.

const $ = (id) => document.getElementById(id);

/** Milliseconds with one decimal, or with none when large. */
function ms(value) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '?';
  return value >= 100 ? `${Math.round(value)} ms` : `${value.toFixed(1)} ms`;
}

function percent(p) {
  return `${(p * 100).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;
}

function seconds(msValue) {
  return msValue >= 1000 ? `${+(msValue / 1000).toFixed(1)} s` : `${msValue} ms`;
}

function bytes(n) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(n % (1 << 20) ? 1 : 0)} MiB`;
  if (n >= 1 << 10) return `${Math.round(n / (1 << 10))} KiB`;
  return `${n} B`;
}

function showError(el, message) {
  el.textContent = message || '';
  el.hidden = !message;
}

/**
 * fetch() that answers {ok, status, body, clientMs}; body is the parsed JSON or null. A JSON
 * {"error": "..."} or a network failure becomes `error`.
 */
async function callJson(url, options = {}) {
  const started = performance.now();
  let response;
  try {
    response = await fetch(url, options);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    return { ok: false, status: 0, body: null, error: `network error: ${e.message}`, clientMs: performance.now() - started };
  }
  const text = await response.text();
  const clientMs = performance.now() - started;
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = body && typeof body.error === 'string' ? body.error : text.slice(0, 200) || response.statusText;
    return { ok: false, status: response.status, body, error: `${response.status}: ${error}`, clientMs };
  }
  return { ok: true, status: response.status, body, error: null, clientMs };
}

/** Fills an <ol> with horizontal bars: items [{label, value (0..1), title?, best?}]. */
function renderBars(list, items) {
  list.replaceChildren(
    ...items.map((item) => {
      const li = document.createElement('li');
      li.className = 'bar-row' + (item.best ? ' best' : '');
      li.dataset.testid = item.testid || 'bar-row';
      if (item.key !== undefined) li.dataset.key = String(item.key);
      const label = document.createElement('span');
      label.className = 'bar-label';
      label.textContent = item.label;
      if (item.title) label.title = item.title;
      const track = document.createElement('span');
      track.className = 'bar-track';
      const fill = document.createElement('span');
      fill.className = 'bar-fill';
      fill.style.setProperty('--value', String(Math.max(0, Math.min(1, item.value))));
      track.append(fill);
      const value = document.createElement('span');
      value.className = 'bar-value';
      value.textContent = percent(item.value);
      li.append(label, track, value);
      return li;
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Image classification

function setupClassify() {
  const drop = $('classify-drop');
  const input = $('classify-file');
  const preview = $('classify-preview');
  const dropText = $('classify-drop-text');
  const backend = $('classify-backend');
  const results = $('classify-results');
  const latency = $('classify-latency');
  const error = $('classify-error');
  let current = null; // the File being shown
  let previewUrl = null;
  let sequence = 0;

  async function classify() {
    if (!current) return;
    const mine = ++sequence;
    results.setAttribute('aria-busy', 'true');
    latency.textContent = 'classifying…';
    showError(error, '');
    const params = new URLSearchParams({ k: '5' });
    if (backend.value) params.set('backend', backend.value);
    const answer = await callJson(`/v1/classify?${params}`, {
      method: 'POST',
      headers: { 'content-type': current.type || 'application/octet-stream' },
      body: current,
    });
    if (mine !== sequence) return; // a newer image or backend took over
    results.removeAttribute('aria-busy');
    if (!answer.ok) {
      results.replaceChildren();
      latency.textContent = '';
      showError(error, answer.error);
      return;
    }
    const { predictions = [], timing_ms: timing = {}, backend: used } = answer.body;
    renderBars(
      results,
      predictions.map((p, i) => ({
        label: p.label,
        title: `class ${p.index}`,
        value: p.probability,
        best: i === 0,
        key: p.index,
        testid: 'classify-row',
      })),
    );
    latency.textContent =
      `${ms(answer.clientMs)} round trip · guest ${ms(timing.total)}, ` +
      `inference ${ms(timing.inference)}` + (used ? ` · ${used}` : '');
  }

  function take(file) {
    if (!file) return;
    current = file;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    preview.alt = file.name || 'the chosen image';
    preview.hidden = false;
    drop.classList.add('has-image');
    dropText.textContent = 'Drop another image or choose a file';
    classify();
  }

  input.addEventListener('change', () => take(input.files[0]));
  backend.addEventListener('change', classify);
  for (const type of ['dragenter', 'dragover']) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add('dragging');
    });
  }
  for (const type of ['dragleave', 'dragend']) {
    drop.addEventListener(type, () => drop.classList.remove('dragging'));
  }
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('dragging');
    const file = [...(e.dataTransfer?.files || [])].find((f) => f.type.startsWith('image/')) || e.dataTransfer?.files[0];
    take(file);
  });
}

// ---------------------------------------------------------------------------------------------
// Type-ahead

const DEBOUNCE_MS = 120;
/** The partly typed word at the end of the text (letters and apostrophes), if any. */
const TRAILING_WORD = /[A-Za-z'\u2018\u2019]+$/;

function setupPredict() {
  const input = $('predict-input');
  const list = $('predict-suggestions');
  const latency = $('predict-latency');
  const error = $('predict-error');
  let suggestions = []; // [{word, probability}]
  let completing = null;
  let selected = -1;
  let timer = null;
  let controller = null;

  function render() {
    list.replaceChildren(
      ...suggestions.map((s, i) => {
        const li = document.createElement('li');
        li.id = `predict-option-${i}`;
        li.setAttribute('role', 'option');
        li.dataset.testid = 'predict-suggestion';
        li.dataset.word = s.word;
        li.setAttribute('aria-selected', String(i === selected));
        const word = document.createElement('span');
        word.className = 'word';
        if (completing && s.word.startsWith(completing)) {
          const typed = document.createElement('span');
          typed.className = 'typed';
          typed.textContent = completing;
          word.append(typed, s.word.slice(completing.length));
        } else {
          word.textContent = s.word;
        }
        const p = document.createElement('span');
        p.className = 'probability';
        p.textContent = percent(s.probability);
        li.append(word, p);
        // mousedown, not click: keep the focus in the text box.
        li.addEventListener('mousedown', (e) => {
          e.preventDefault();
          accept(i);
        });
        return li;
      }),
    );
    input.setAttribute('aria-expanded', String(suggestions.length > 0));
    if (selected >= 0) input.setAttribute('aria-activedescendant', `predict-option-${selected}`);
    else input.removeAttribute('aria-activedescendant');
  }

  function clear() {
    suggestions = [];
    completing = null;
    selected = -1;
    delete list.dataset.text;
    render();
  }

  async function predict() {
    const text = input.value;
    if (controller) controller.abort();
    if (!text.trim()) {
      clear();
      latency.textContent = '';
      showError(error, '');
      return;
    }
    controller = new AbortController();
    const params = new URLSearchParams({ text, k: '5' });
    let answer;
    try {
      answer = await callJson(`/v1/predict?${params}`, { signal: controller.signal });
    } catch {
      return; // aborted: a newer request is on its way
    }
    if (input.value !== text) return; // typed on meanwhile
    if (!answer.ok) {
      clear();
      latency.textContent = '';
      showError(error, answer.error);
      return;
    }
    showError(error, '');
    suggestions = answer.body.suggestions || [];
    completing = answer.body.completing ?? null;
    selected = suggestions.length ? 0 : -1;
    list.dataset.text = text; // which text these suggestions are for (tests wait on it)
    list.dataset.completing = completing ?? '';
    render();
    latency.textContent =
      `${ms(answer.clientMs)} round trip` +
      (completing ? ` · completing “${completing}”` : ' · next word');
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(predict, DEBOUNCE_MS);
  }

  function accept(index) {
    const choice = suggestions[index];
    if (!choice) return;
    let text = input.value;
    if (completing !== null && TRAILING_WORD.test(text)) {
      text = text.replace(TRAILING_WORD, choice.word); // finish the word being typed
    } else {
      if (text && !/\s$/.test(text)) text += ' ';
      text += choice.word;
    }
    input.value = `${text} `;
    input.setSelectionRange(input.value.length, input.value.length);
    input.focus();
    clear();
    clearTimeout(timer);
    predict(); // straight away: what comes next
  }

  input.addEventListener('input', schedule);
  input.addEventListener('keydown', (e) => {
    if (!suggestions.length) return;
    switch (e.key) {
      case 'ArrowDown':
        e.preventDefault();
        selected = (selected + 1) % suggestions.length;
        render();
        break;
      case 'ArrowUp':
        e.preventDefault();
        selected = (selected - 1 + suggestions.length) % suggestions.length;
        render();
        break;
      case 'Tab':
      case 'Enter':
        if (selected >= 0 && !e.shiftKey) {
          e.preventDefault();
          accept(selected);
        }
        break;
      case 'Escape':
        clear();
        break;
      default:
    }
  });
  input.addEventListener('blur', () => setTimeout(() => document.activeElement !== input && clear(), 150));
}

// ---------------------------------------------------------------------------------------------
// Digits

const PEN_WIDTH = 22; // in canvas pixels (280x280): thick, like a felt pen
const PAPER = '#ffffff';
const INK = '#111827';

function setupDigits() {
  const card = $('digits');
  const canvas = $('digits-canvas');
  const ctx = canvas.getContext('2d');
  const clearButton = $('digits-clear');
  const recogniseButton = $('digits-recognise');
  const result = $('digits-result');
  const preview = $('digits-input-preview');
  const bars = $('digits-probabilities');
  const latency = $('digits-latency');
  const error = $('digits-error');
  let drawing = null; // {id, x, y} while the pen is down
  let inked = false;
  let sequence = 0;

  function resetCanvas() {
    ctx.fillStyle = PAPER;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = INK;
    ctx.fillStyle = INK;
    ctx.lineWidth = PEN_WIDTH;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    inked = false;
  }

  function showEmpty() {
    result.textContent = '–';
    delete result.dataset.digit;
    bars.replaceChildren();
    preview.getContext('2d').clearRect(0, 0, 8, 8);
    latency.textContent = '';
    showError(error, '');
  }

  /** Pointer position in canvas pixels (the canvas may be scaled by CSS). */
  function point(e) {
    const rect = canvas.getBoundingClientRect();
    return {
      x: ((e.clientX - rect.left) * canvas.width) / rect.width,
      y: ((e.clientY - rect.top) * canvas.height) / rect.height,
    };
  }

  canvas.addEventListener('pointerdown', (e) => {
    if (e.button !== 0) return;
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    const p = point(e);
    drawing = { id: e.pointerId, ...p };
    ctx.beginPath();
    ctx.arc(p.x, p.y, PEN_WIDTH / 2, 0, Math.PI * 2);
    ctx.fill();
    inked = true;
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!drawing || e.pointerId !== drawing.id) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    for (const ev of events.length ? events : [e]) {
      const p = point(ev);
      ctx.beginPath();
      ctx.moveTo(drawing.x, drawing.y);
      ctx.lineTo(p.x, p.y);
      ctx.stroke();
      drawing.x = p.x;
      drawing.y = p.y;
    }
  });
  const end = (e) => {
    if (!drawing || e.pointerId !== drawing.id) return;
    drawing = null;
    recognise(); // on every stroke end
  };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);

  async function recognise() {
    if (!inked) {
      sequence++;
      delete card.dataset.busy;
      showEmpty();
      showError(error, 'Draw a digit first.');
      return;
    }
    const mine = ++sequence;
    card.dataset.busy = 'true'; // until the latest request is answered (tests wait on it)
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
    const answer = await callJson('/v1/digits', {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: blob,
    });
    if (mine !== sequence) return;
    delete card.dataset.busy;
    if (!answer.ok) {
      showEmpty();
      showError(error, answer.error);
      return;
    }
    showError(error, '');
    const { digit, probabilities = [], pixels = [], timing_ms: timing = {} } = answer.body;
    result.textContent = String(digit);
    result.dataset.digit = String(digit);
    renderBars(
      bars,
      probabilities.map((p, d) => ({ label: String(d), value: p, best: d === digit, key: d, testid: 'digits-row' })),
    );
    drawInput(pixels);
    latency.textContent =
      `${ms(answer.clientMs)} round trip · guest ${ms(timing.total)} ` +
      `(pre-processing ${ms(timing.preprocess)}, inference ${ms(timing.inference)})`;
  }

  /** The 8x8 model input (0..16), dark on light like the drawing. */
  function drawInput(pixels) {
    const pctx = preview.getContext('2d');
    const image = pctx.createImageData(8, 8);
    pixels.slice(0, 64).forEach((v, i) => {
      const shade = 255 - Math.round((Math.max(0, Math.min(16, v)) / 16) * 255);
      image.data.set([shade, shade, shade, 255], i * 4);
    });
    pctx.putImageData(image, 0, 0);
  }

  clearButton.addEventListener('click', () => {
    sequence++;
    delete card.dataset.busy;
    resetCanvas();
    showEmpty();
  });
  recogniseButton.addEventListener('click', recognise);
  resetCanvas();
}

// ---------------------------------------------------------------------------------------------
// Deployed apps

function setupApps() {
  const list = $('apps-list');
  const error = $('apps-error');
  const refresh = $('apps-refresh');

  function cell(content, className) {
    const td = document.createElement('td');
    if (className) td.className = className;
    if (content instanceof Node) td.append(content);
    else td.textContent = content;
    return td;
  }

  function codeList(items) {
    const span = document.createElement('span');
    span.className = 'code-list';
    for (const item of items) {
      const code = document.createElement('code');
      code.textContent = item;
      span.append(code);
    }
    return span;
  }

  async function load() {
    refresh.disabled = true;
    const answer = await callJson('/v1/apps');
    refresh.disabled = false;
    if (!answer.ok) {
      showError(error, answer.error);
      return;
    }
    showError(error, '');
    const apps = answer.body.apps || [];
    list.replaceChildren(
      ...apps.map((app) => {
        const tr = document.createElement('tr');
        tr.dataset.testid = 'app-row';
        tr.dataset.app = app.name;
        const models = [...(app.models || []), ...(app.bundled_models || []).map((m) => (typeof m === 'string' ? m : m.name))];
        tr.append(
          cell(app.name, 'app-name'),
          cell(codeList(app.routes || [])),
          cell(models.length ? codeList([...new Set(models)]) : '—'),
          cell(app.memory_mib !== undefined ? `${app.memory_mib} MiB` : '?', 'num'),
          cell(app.deadline_ms !== undefined ? seconds(app.deadline_ms) : '?', 'num'),
          cell(app.max_body_bytes !== undefined ? bytes(app.max_body_bytes) : '?', 'num'),
          cell(app.wasm_bytes !== undefined ? bytes(app.wasm_bytes) : '?', 'num'),
        );
        return tr;
      }),
    );
    list.dataset.loaded = String(apps.length);
  }

  refresh.addEventListener('click', load);
  load();
}

setupClassify();
setupPredict();
setupDigits();
setupApps();
