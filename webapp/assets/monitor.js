// The monitor's diagrams (bundled by esbuild into static/dist/monitor.js): bpmn-js's NavigatedViewer,
// as the case page uses it, plus markers for incidents and overlays. Everything it shows comes from data
// attributes the server wrote; the page's tables carry the same information for people who cannot see it.
//   data-completed / data-active / data-incidents: comma-separated BPMN ids (markers done, active, incident)
//   data-case-overlays: {"element id": "open" | "overdue" | "incident"}
//   data-process-overlays: {"element id": {"waiting": n, "heat": 1..5, "mean": "…", "p90": "…"}}
import NavigatedViewer from "bpmn-js/lib/NavigatedViewer";

function badge(text, kind) {
  const element = document.createElement("span");
  element.className = `diagram-badge ${kind || ""}`;
  element.textContent = text;
  return element;
}

function note(text) {
  const element = document.createElement("span");
  element.className = "diagram-note";
  element.textContent = text;
  return element;
}

function json(value) {
  try {
    return value ? JSON.parse(value) : {};
  } catch (error) {
    return {};
  }
}

async function show(container) {
  const data = container.dataset;
  const response = await fetch(data.diagramUrl, { credentials: "same-origin" });
  if (!response.ok) {
    container.textContent = data.errorText || "Das Diagramm konnte nicht geladen werden.";
    return;
  }
  const viewer = new NavigatedViewer({ container });
  await viewer.importXML(await response.text());
  const canvas = viewer.get("canvas");
  const registry = viewer.get("elementRegistry");
  const overlays = viewer.get("overlays");
  const known = (id) => Boolean(registry.get(id));
  const mark = (ids, marker) => (ids || "").split(",").filter(Boolean).filter(known)
    .forEach((id) => canvas.addMarker(id, marker));
  mark(data.completed, "done");
  mark(data.active, "active");
  mark(data.incidents, "incident");

  const labels = { open: data.labelOpen, overdue: data.labelOverdue, incident: data.labelIncident };
  Object.entries(json(data.caseOverlays)).filter(([id]) => known(id)).forEach(([id, kind]) => {
    overlays.add(id, { position: { top: -12, right: 12 }, html: badge(labels[kind] || kind, kind) });
  });
  Object.entries(json(data.processOverlays)).filter(([id]) => known(id)).forEach(([id, item]) => {
    if (item.heat) canvas.addMarker(id, `heat-${item.heat}`);
    if (item.waiting) {
      overlays.add(id, { position: { top: -12, right: 12 },
        html: badge(`${item.waiting} ${data.labelWaiting || ""}`.trim(), "waiting") });
    }
    if (item.mean && item.mean !== "–") {
      overlays.add(id, { position: { bottom: 14, left: 0 },
        html: note(`${data.labelMean || "Ø"} ${item.mean} · ${data.labelP90 || "90 %"} ${item.p90}`) });
    }
  });
  canvas.zoom("fit-viewport");
  container.dataset.ready = "true";
}

document.querySelectorAll("[data-monitor-diagram]").forEach((container) => {
  show(container).catch(() => {
    container.textContent = container.dataset.errorText || "Das Diagramm konnte nicht angezeigt werden.";
  });
});
