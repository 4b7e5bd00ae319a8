/* Orthanc NAS: the image viewer (zoom, pan, window/level, series scrolling, cine), used behind the
   login (/ui/viewer) and by share links (/s/<token>/viewer). Orthanc renders every frame (it decodes
   JPEG 2000, JPEG-LS, RLE... and applies rescale, window and MONOCHROME1); this draws and moves it. */
'use strict';
const ImageViewer = (function () {
  const CT_PRESETS = [['Soft tissue', 40, 400], ['Lung', -600, 1500], ['Bone', 400, 1800], ['Brain', 40, 80],
    ['Abdomen', 60, 400]];
  const CACHE = 96, PRELOAD = 4, FPS = 15;

  /** opts: { root, seriesUrl(id), frameUrl(instance, frame, kind, query), series: [{id, label}] } */
  function mount(opts) {
    const root = opts.root, q = function (sel) { return root.querySelector(sel); };
    const stage = q('.iv-stage'), canvas = q('.iv-canvas'), ctx = canvas.getContext('2d');
    const cache = new Map(), stacks = new Map();
    let stack = null, seriesIndex = 0, pos = 0, wl = null, preset = 'default', invert = false;
    let zoom = 1, panX = 0, panY = 0, tool = 'window', shown = '', wanted = '', loading = false, timer = null;

    // ---- frames -------------------------------------------------------------------------------
    function urlOf(index) {
      const f = stack.frames[index], inst = f[0], n = f[1];
      if (stack.colour) return opts.frameUrl(inst, n, 'rendered', '');
      const w = wl || stack.window;
      if (w) return opts.frameUrl(inst, n, 'rendered', wl ? 'window-center=' + num(w[0]) + '&window-width=' + num(w[1]) : '');
      return opts.frameUrl(inst, n, 'preview', '');
    }
    function num(x) { return String(Math.round(x * 100) / 100); }
    function fetchImage(url) {
      if (cache.has(url)) { const hit = cache.get(url); cache.delete(url); cache.set(url, hit); return hit; }
      const p = new Promise(function (resolve, reject) {
        const img = new Image();
        img.onload = function () { resolve(img); };
        img.onerror = function () { cache.delete(url); reject(new Error('image')); };
        img.src = url;
      });
      cache.set(url, p);
      if (cache.size > CACHE) cache.delete(cache.keys().next().value);
      return p;
    }
    /** Draws the current frame; while one loads, the latest wish waits (no pile of requests). */
    function render() {
      if (!stack) return;
      wanted = urlOf(pos);
      info();
      if (loading || wanted === shown) return;
      loading = true;
      const url = wanted;
      fetchImage(url).then(function (img) {
        if (canvas.width !== img.naturalWidth || canvas.height !== img.naturalHeight) {
          canvas.width = img.naturalWidth; canvas.height = img.naturalHeight; place();
        }
        ctx.drawImage(img, 0, 0);
        shown = url;
        note('');
      }, function () {
        note('This image cannot be shown (no decoder for it, or your viewing time is over).');
        shown = url;
      }).then(function () {
        loading = false;
        if (wanted !== shown) render();
        for (let k = 1; k <= PRELOAD && pos + k < stack.frames.length; k++) fetchImage(urlOf(pos + k)).catch(function () {});
      });
    }
    function note(text) { const n = q('.iv-note'); n.textContent = text; n.hidden = !text; }
    function info() {
      const f = stack.frames.length, w = wl || stack.window;
      q('.iv-pos').textContent = 'Image ' + (pos + 1) + ' of ' + f;
      q('.iv-slider').max = String(Math.max(0, f - 1));
      q('.iv-slider').value = String(pos);
      q('.iv-slider').disabled = f < 2;
      q('.iv-play').disabled = f < 2;
      const parts = [stack.modality, 'image ' + (pos + 1) + '/' + f];
      if (stack.colour) parts.push('colour');
      else parts.push(w ? 'W ' + Math.round(w[1]) + ' L ' + Math.round(w[0]) : 'W/L auto');
      parts.push(Math.round(zoom * 100) + '%');
      q('.iv-info').textContent = parts.filter(Boolean).join(' · ');
    }

    // ---- series -------------------------------------------------------------------------------
    async function openSeries(index, at) {
      stop();
      seriesIndex = index;
      q('.iv-series').value = String(index);
      const id = opts.series[index].id;
      let s = stacks.get(id);
      if (!s) {
        try { s = await api('GET', opts.seriesUrl(id)); } catch (err) { note(err.message || 'This series cannot be shown.'); return; }
        stacks.set(id, s);
      }
      stack = s; wl = null; preset = 'default'; shown = '';
      pos = typeof at === 'string' ? Math.max(0, s.frames.findIndex(function (f) { return f[0] === at; })) : 0;
      fillPresets();
      fit();
      render();
    }
    function go(index) {
      if (!stack) return;
      pos = Math.max(0, Math.min(index, stack.frames.length - 1));
      render();
    }
    function fillPresets() {
      const sel = q('.iv-preset');
      sel.textContent = '';
      const add = function (value, text) { sel.appendChild(UI.el('option', { value: value }, text)); };
      add('default', stack.window ? 'From the images (' + Math.round(stack.window[1]) + '/' + Math.round(stack.window[0]) + ')' : 'Full range (auto)');
      if (stack.window) add('auto', 'Full range (auto)');
      if (stack.modality === 'CT') CT_PRESETS.forEach(function (p) { add(p[0], p[0] + ' (' + p[2] + '/' + p[1] + ')'); });
      add('custom', 'Custom (drag)');
      sel.value = 'default';
      sel.disabled = stack.colour;
      q('[data-tool="window"]').disabled = stack.colour;
      if (stack.colour && tool === 'window') setTool('pan');
    }
    function applyPreset(value) {
      preset = value;
      if (value === 'default') wl = null;
      else if (value === 'auto') wl = stack.range ? [(stack.range[0] + stack.range[1]) / 2, Math.max(1, stack.range[1] - stack.range[0])] : null;
      else {
        const p = CT_PRESETS.find(function (x) { return x[0] === value; });
        if (p) wl = [p[1], p[2]];
      }
      render();
    }

    // ---- zoom and pan -------------------------------------------------------------------------
    function fit() { zoom = 1; panX = 0; panY = 0; place(); }
    function place() {
      const sw = stage.clientWidth || 1, sh = stage.clientHeight || 1, iw = canvas.width || 1, ih = canvas.height || 1;
      const base = Math.min(sw / iw, sh / ih);
      canvas.style.width = Math.round(iw * base) + 'px';
      canvas.style.height = Math.round(ih * base) + 'px';
      canvas.style.transform = 'translate(' + panX + 'px,' + panY + 'px) scale(' + zoom + ')';
      canvas.style.filter = invert ? 'invert(1)' : 'none';
      if (stack) info();
    }
    function zoomBy(factor) { zoom = Math.max(0.25, Math.min(zoom * factor, 16)); place(); }
    function setTool(name) {
      tool = name;
      root.querySelectorAll('[data-tool]').forEach(function (b) { b.setAttribute('aria-pressed', String(b.dataset.tool === name)); });
      stage.dataset.tool = name;
    }

    // ---- cine ---------------------------------------------------------------------------------
    function play() {
      if (timer) { stop(); return; }
      q('.iv-play').textContent = 'Stop';
      q('.iv-play').setAttribute('aria-pressed', 'true');
      timer = setInterval(function () { if (!loading) go(pos + 1 < stack.frames.length ? pos + 1 : 0); }, 1000 / FPS);
    }
    function stop() {
      if (timer) clearInterval(timer);
      timer = null;
      q('.iv-play').textContent = 'Play';
      q('.iv-play').setAttribute('aria-pressed', 'false');
    }

    // ---- input --------------------------------------------------------------------------------
    let drag = null;
    stage.addEventListener('pointerdown', function (e) {
      if (!stack) return;
      stage.setPointerCapture(e.pointerId);
      const start = wl || stack.window || (stack.range ? [(stack.range[0] + stack.range[1]) / 2, Math.max(1, stack.range[1] - stack.range[0])] : [128, 256]);
      drag = { x: e.clientX, y: e.clientY, panX: panX, panY: panY, zoom: zoom, wl: start.slice(),
        tool: e.button === 2 || e.shiftKey ? 'pan' : e.button === 1 || e.ctrlKey ? 'zoom' : tool };
      e.preventDefault();
    });
    stage.addEventListener('pointermove', function (e) {
      if (!drag) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (drag.tool === 'pan') { panX = drag.panX + dx; panY = drag.panY + dy; place(); }
      else if (drag.tool === 'zoom') { zoom = Math.max(0.25, Math.min(drag.zoom * Math.exp(-dy / 200), 16)); place(); }
      else if (drag.tool === 'window' && !stack.colour) {
        const span = stack.range ? Math.max(1, stack.range[1] - stack.range[0]) : 256, k = span / 600;
        wl = [drag.wl[0] + dy * k, Math.max(1, drag.wl[1] + dx * k)];
        preset = 'custom'; q('.iv-preset').value = 'custom';
        render();
      }
    });
    function endDrag() { drag = null; }
    stage.addEventListener('pointerup', endDrag);
    stage.addEventListener('pointercancel', endDrag);
    stage.addEventListener('contextmenu', function (e) { e.preventDefault(); });
    stage.addEventListener('wheel', function (e) {
      if (!stack) return;
      e.preventDefault();
      if (e.ctrlKey || e.metaKey) zoomBy(e.deltaY < 0 ? 1.15 : 1 / 1.15);
      else go(pos + (e.deltaY > 0 ? 1 : -1));
    }, { passive: false });
    root.addEventListener('keydown', function (e) {
      if (!stack || e.altKey || e.ctrlKey || e.metaKey || /^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName)) return;
      const keys = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1, PageDown: 10, PageUp: -10 };
      if (e.key in keys) go(pos + keys[e.key]);
      else if (e.key === 'Home') go(0);
      else if (e.key === 'End') go(stack.frames.length - 1);
      else if (e.key === '+' || e.key === '=') zoomBy(1.25);
      else if (e.key === '-') zoomBy(0.8);
      else if (e.key === '0') fit();
      else if (e.key === 'i') { invert = !invert; place(); }
      else return;
      e.preventDefault();
    });
    q('.iv-series').addEventListener('change', function () { openSeries(parseInt(q('.iv-series').value, 10) || 0); });
    q('.iv-prev').addEventListener('click', function () { go(pos - 1); });
    q('.iv-next').addEventListener('click', function () { go(pos + 1); });
    q('.iv-slider').addEventListener('input', function () { go(parseInt(q('.iv-slider').value, 10) || 0); });
    q('.iv-play').addEventListener('click', play);
    q('.iv-preset').addEventListener('change', function () { applyPreset(q('.iv-preset').value); });
    q('.iv-zoom-in').addEventListener('click', function () { zoomBy(1.25); });
    q('.iv-zoom-out').addEventListener('click', function () { zoomBy(0.8); });
    q('.iv-fit').addEventListener('click', fit);
    q('.iv-invert').addEventListener('click', function () {
      invert = !invert; q('.iv-invert').setAttribute('aria-pressed', String(invert)); place();
    });
    q('.iv-reset').addEventListener('click', function () {
      invert = false; q('.iv-invert').setAttribute('aria-pressed', 'false'); q('.iv-preset').value = 'default'; applyPreset('default'); fit();
    });
    root.querySelectorAll('[data-tool]').forEach(function (b) { b.addEventListener('click', function () { setTool(b.dataset.tool); }); });
    window.addEventListener('resize', place);

    opts.series.forEach(function (s, i) { q('.iv-series').appendChild(UI.el('option', { value: String(i) }, s.label)); });
    setTool('window');
    root.hidden = false;
    return {
      open: openSeries,
      show: function (seriesIdx, instanceId) { return seriesIdx === seriesIndex && stack ? go(Math.max(0, stack.frames.findIndex(function (f) { return f[0] === instanceId; }))) : openSeries(seriesIdx, instanceId); },
      state: function () { return { series: seriesIndex, pos: pos, frames: stack ? stack.frames.length : 0, wl: wl || (stack && stack.window), zoom: zoom, shown: shown }; },
    };
  }

  /** A series' label from its tags (as the series lists show it). */
  function label(s, index) {
    const t = s.tags || {}, n = (s.instances || []).length;
    return ['Series ' + (t.SeriesNumber || index + 1), t.Modality, t.SeriesDescription].filter(Boolean).join(' — ') +
      ' (' + n + (n === 1 ? ' image)' : ' images)');
  }

  return { mount: mount, label: label };
}());
