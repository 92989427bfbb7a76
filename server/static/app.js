// The page's behaviour: read the form, ask the JSON API, fill the answer, draw the plots.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const charts = {};

  function fmt(x) {
    if (x === null || x === undefined) return "—";
    if (typeof x !== "number") return String(x);
    const a = Math.abs(x);
    return a !== 0 && (a >= 1e5 || a < 1e-2) ? x.toExponential(3) : x.toPrecision(4);
  }

  function fmtInterval(pair) {
    return pair ? `95%: [${fmt(pair[0])}, ${fmt(pair[1])}]` : "";
  }

  class RequestError extends Error {}

  async function getJSON(url, options) {
    const response = await fetch(url, options);
    const body = await response.json();
    if (!response.ok) {
      const e = body.error || {};
      const err = new RequestError(`${e.code}: ${e.message}` + (e.field ? ` (field ${e.field})` : ""));
      err.status = response.status;
      throw err;
    }
    return body;
  }

  function q(params) {
    const s = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) s.set(k, v);
    return s.toString();
  }

  function setMode() {
    const compute = document.querySelector("input[name=mode]:checked").value === "compute";
    $("nd-inputs").hidden = compute;
    $("compute-inputs").hidden = !compute;
  }

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = false;
  }

  function fillAnswer(p) {
    $("answer-law").textContent = `(law: ${p.law})`;
    for (const key of ["n_params", "tokens"]) $(`out-${key}`).textContent = fmt(p.inputs[key]);
    for (const key of ["flops", "lr", "batch_tokens", "batch_size", "loss"]) {
      $(`out-${key}`).textContent = fmt(p[key]);
    }
    for (const key of ["lr", "batch_tokens", "loss"]) {
      $(`out-${key}-interval`).textContent = fmtInterval((p.intervals || {})[key]);
    }
    const x = p.extrapolation || {};
    $("out-extrapolation").textContent = `N ×${fmt(x.n_params_factor)}, D ×${fmt(x.tokens_factor)} beyond the fitted range`;
    $("out-lr_kind").textContent = p.lr_kind || "";
    const list = $("warnings");
    list.replaceChildren(...(p.warnings || []).map((w) => Object.assign(document.createElement("li"), { textContent: w })));
    $("answer").hidden = false;
  }

  function fillCompare(rows) {
    const body = document.querySelector("#compare-table tbody");
    body.replaceChildren(
      ...rows.map((p) => {
        const tr = document.createElement("tr");
        for (const v of [p.law, fmt(p.lr), fmt(p.batch_tokens), fmt(p.loss), (p.warnings || []).length]) {
          tr.appendChild(Object.assign(document.createElement("td"), { textContent: v }));
        }
        return tr;
      })
    );
  }

  const xy = (xs, ys) => xs.map((x, i) => ({ x, y: ys[i] })).filter((p) => p.y !== null && p.y !== undefined && p.y > 0);

  function draw(id, datasets, xTitle, yTitle, xLog, yLog, yRange) {
    if (charts[id]) charts[id].destroy();
    charts[id] = new Chart($(id), {
      type: "scatter",
      data: { datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: {
          x: { type: xLog ? "logarithmic" : "linear", title: { display: true, text: xTitle } },
          y: Object.assign({ type: yLog ? "logarithmic" : "linear", title: { display: true, text: yTitle } }, yRange || {}),
        },
        // The lower edge of a band is drawn but not listed.
        plugins: { legend: { labels: { boxWidth: 12, filter: (item) => !item.text.endsWith("95% low") } } },
      },
    });
  }

  const line = (label, data, color, extra) =>
    Object.assign({ label, data, showLine: true, pointRadius: 0, borderColor: color, backgroundColor: color, borderWidth: 2 }, extra || {});
  const band = (label, low, high, color) => [
    line(`${label} 95% low`, low, "rgba(0,0,0,0)", { borderWidth: 0 }),
    line(`${label} 95% band`, high, "rgba(0,0,0,0)", { borderWidth: 0, fill: "-1", backgroundColor: color }),
  ];
  const marker = (label, point, color, style) => ({
    label, data: point ? [point] : [], pointRadius: 8, pointStyle: style || "crossRot", borderColor: color, backgroundColor: color, borderWidth: 3,
  });

  function drawLoss(t, overlays, prediction) {
    const data = xy(t.tokens, t.loss);
    const sets = [line(`loss (${t.law}, ${t.inputs.schedule})`, data, "#1f5fbf")];
    if (t.loss_low && t.loss_high) sets.push(...band("loss", xy(t.tokens, t.loss_low), xy(t.tokens, t.loss_high), "rgba(31,95,191,0.18)"));
    const rc = t.residual_correction;
    const corrected = rc && rc.material; // the residual map moved the curve
    // Where it did, the smooth law alone is drawn dashed beside it.
    if (corrected && t.loss_law_alone) {
      sets.push(line("trajectory law alone (no residual map)", xy(t.tokens, t.loss_law_alone), "#7f8c8d", { borderDash: [6, 4], borderWidth: 1.5 }));
    }
    // Other schedules at the same N, D, peak LR and batch, one line each (no band, to stay legible).
    const palette = ["#16a085", "#d35400", "#8e44ad", "#b7950b"];
    const finals = [`${t.inputs.schedule} ${fmt(t.loss[t.loss.length - 1])}`];
    (overlays || []).forEach((o, i) => {
      sets.push(line(`schedule ${o.inputs.schedule}`, xy(o.tokens, o.loss), palette[i % palette.length], { borderWidth: 1.5 }));
      finals.push(`${o.inputs.schedule} ${fmt(o.loss[o.loss.length - 1])}`);
    });
    const last = data[data.length - 1];
    sets.push(marker("query: final loss", last, "#c0392b"));
    // The loss law answers the final loss at the optimal LR and batch too, fitted apart from
    // the trajectory law (and the better of the two in the backtests): where the curve is drawn
    // at those settings, its answer is marked at the curve's end.
    const recommended = t.peak_lr_source === "recommended" && t.batch_tokens_source === "recommended";
    const lawLoss = recommended && prediction && prediction.loss > 0 && last ? { x: last.x, y: prediction.loss } : null;
    if (lawLoss) sets.push(marker("loss law: final loss", lawLoss, "#2c3e50", "triangle"));
    // The first steps' loss dwarfs the rest: scale the axis to the curve after 3% of training.
    const tail = data.slice(Math.floor(data.length * 0.03)).concat(lawLoss ? [lawLoss] : []);
    const lows = xy(t.tokens, t.loss_low || []).map((p) => p.y).concat(tail.map((p) => p.y));
    const top = tail.length ? Math.max(...tail.map((p) => p.y)) : undefined;
    const yRange = tail.length ? { min: Math.min(...lows) * 0.98, max: top * 1.02 } : undefined;
    draw("loss-chart", sets, "tokens seen", "validation loss (nats/token)", false, false, yRange);
    let note = "";
    if (corrected) {
      note = `; corrected by the law's misfit on ${rc.runs} like fitted run(s) at N = ${rc.n_params.map(fmt).join(", ")} (support ${rc.support.toFixed(2)})`;
    } else if (rc && rc.applied) {
      note = "; no fitted run is like this one: the trajectory law alone";
    }
    // Bootstrap refits whose loss goes non-positive on this run are not in the band: say so.
    const spread = t.interval;
    const bandNote = spread && spread.left_out > 0
      ? `; the 95% band leaves out ${spread.left_out} of ${spread.refits} bootstrap refits (their loss goes non-positive on this run)`
      : "";
    const compared = finals.length > 1 ? `; final loss ${finals.join(", ")}` : "";
    let lawNote = "";
    if (lawLoss) {
      const iv = prediction.intervals && prediction.intervals.loss;
      lawNote = `; the loss law's final loss ${fmt(prediction.loss)}${iv ? ` [${fmt(iv[0])}, ${fmt(iv[1])}]` : ""} (fitted separately)`;
    }
    $("loss-caption").textContent = `${t.inputs.schedule}, peak LR ${fmt(t.peak_lr)}, batch ${fmt(t.batch_tokens)} tokens${note}${bandNote}${compared}${lawNote}`;
  }

  function drawLaw(id, c, key, yTitle, compared) {
    const sets = [line(`${key} (${c.law})`, xy(c.n_params, c[key]), "#1f5fbf")];
    sets.push(...band(key, xy(c.n_params, c[`${key}_low`]), xy(c.n_params, c[`${key}_high`]), "rgba(31,95,191,0.18)"));
    const optima = c.optima.filter((o) => o[key] > 0 && o.n_params > 0).map((o) => ({ x: o.n_params, y: o[key] }));
    sets.push({ label: "sweep optima (each at its own D)", data: optima, pointRadius: 4, borderColor: "#333", backgroundColor: "#999" });
    const palette = ["#8e44ad", "#16a085", "#d35400", "#7f8c8d", "#2c3e50", "#b7950b"];
    compared.forEach((p, i) => {
      if (p.law !== c.law && p[key] > 0) sets.push(marker(p.law, { x: p.inputs.n_params, y: p[key] }, palette[i % palette.length], "triangle"));
    });
    const qy = c.query[key];
    sets.push(marker("query", qy > 0 ? { x: c.query.n_params, y: qy } : null, "#c0392b"));
    draw(id, sets, "N (non-embedding parameters)", yTitle, true, true);
  }

  async function submit(event) {
    if (event) event.preventDefault();
    document.body.dataset.state = "loading";
    $("error").hidden = true;
    try {
      const law = $("law").value;
      const seqLen = $("seq_len").value.trim();
      const batchTokens = $("batch_tokens").value.trim();
      let nParams = $("n_params").value.trim();
      let tokens = $("tokens").value.trim();
      if (document.querySelector("input[name=mode]:checked").value === "compute") {
        const opt = await getJSON(`/v1/compute-optimal?${q({ flops: $("flops").value.trim(), law })}`);
        if (!(opt.n_params > 0 && opt.tokens > 0)) throw new RequestError(`law ${law} gives no compute-optimal allocation`);
        nParams = String(opt.n_params);
        tokens = String(opt.tokens);
        $("n_params").value = fmt(opt.n_params);
        $("tokens").value = fmt(opt.tokens);
      }
      const prediction = await getJSON(`/v1/predict?${q({ n_params: nParams, tokens, law, seq_len: seqLen, batch_tokens: batchTokens })}`);
      fillAnswer(prediction);
      const others = [...document.querySelectorAll("input[name=compare]:checked")].map((b) => b.value);
      const compareQueries = [law, ...others.filter((id) => id !== law)].map((id) => ({ n_params: +nParams, tokens: +tokens, law: id }));
      const [curves, compared, trajectory] = await Promise.all([
        getJSON(`/v1/laws/${encodeURIComponent(law)}/curves?${q({ n_params: nParams, tokens })}`),
        getJSON("/v1/predict", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(compareQueries) }),
        getJSON(`/v1/trajectory?${q({ n_params: nParams, tokens, law, schedule: $("schedule").value, seq_len: seqLen, batch_tokens: batchTokens })}`).catch((e) => e),
      ]);
      fillCompare(compared);
      $("plots").hidden = false;
      if (trajectory instanceof Error) {
        if (charts["loss-chart"]) charts["loss-chart"].destroy();
        $("loss-note").textContent = `No loss curve: ${trajectory.message}`;
      } else {
        $("loss-note").textContent = "";
        // The other schedules are drawn at the main curve's peak LR and batch, so that only
        // the schedule differs between the lines.
        const schedules = [...document.querySelectorAll("input[name=overlay]:checked")].map((b) => b.value).filter((s) => s !== trajectory.inputs.schedule);
        const at = { n_params: nParams, tokens, law, seq_len: seqLen, lr: trajectory.peak_lr, batch_tokens: trajectory.batch_tokens };
        const overlays = await Promise.all(schedules.map((schedule) => getJSON(`/v1/trajectory?${q({ ...at, schedule })}`).catch((e) => e)));
        const failed = overlays.map((o, i) => (o instanceof Error ? `${schedules[i]}: ${o.message}` : null)).filter(Boolean);
        if (failed.length) $("loss-note").textContent = `Not drawn: ${failed.join("; ")}`;
        drawLoss(trajectory, overlays.filter((o) => !(o instanceof Error)), prediction);
      }
      drawLaw("lr-chart", curves, "lr", "peak learning rate", compared);
      drawLaw("batch-chart", curves, "batch_tokens", "batch (tokens per step)", compared);
      document.body.dataset.state = "done";
    } catch (e) {
      showError(e instanceof RequestError ? e.message : `unexpected: ${e}`);
      document.body.dataset.state = "error";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const radio of document.querySelectorAll("input[name=mode]")) radio.addEventListener("change", setMode);
    $("query").addEventListener("submit", submit);
    // A shared link (/?n_params=..&tokens=..&law=..) fills the form and asks at once.
    const params = new URLSearchParams(location.search);
    for (const key of ["n_params", "tokens", "flops", "law", "schedule", "seq_len", "batch_tokens"]) {
      if (params.has(key)) $(key).value = params.get(key);
    }
    // overlay=wsd,constant checks those schedules' boxes
    const overlay = (params.get("overlay") || "").split(",");
    for (const box of document.querySelectorAll("input[name=overlay]")) box.checked = overlay.includes(box.value);
    if (params.has("flops") && !params.has("n_params")) {
      document.querySelector("input[name=mode][value=compute]").checked = true;
    }
    setMode();
    if (params.has("n_params") || params.has("flops")) submit();
  });
})();
