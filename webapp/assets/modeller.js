// The modeller page: bpmn-js Modeler with the properties panel and the Camunda moddle (bundled by esbuild
// into static/dist/modeller.js, its styles into modeller.css). Everything the page needs comes in data- attributes of [data-modeller];
// there is no inline script (CSP). Also exposes window.fallwerkModeller.create() for the round-trip test.
import BpmnModeler from "bpmn-js/lib/Modeler";
import {
  BpmnPropertiesPanelModule,
  BpmnPropertiesProviderModule,
  CamundaPlatformPropertiesProviderModule,
} from "bpmn-js-properties-panel";
import CamundaBehaviorsModule from "camunda-bpmn-js-behaviors/lib/camunda-platform";
import camundaModdle from "camunda-bpmn-moddle/resources/camunda.json";
import { GermanTranslateModule } from "./modeller-de.js";
import { postJson as post } from "./post-json.js";
import "./modeller.css";

// Before saving, bpmn-js rebuilds each drawn plane's list of shapes and edges from what it has drawn
// (BpmnDiOrdering). Diagram elements it cannot draw would be lost: the called process's shapes inside an
// expanded call activity (MIWG B.1.0, B.2.0), an edge without bpmnElement (C.7.0). Keep them.
function KeepUndrawnDi(eventBus, elementRegistry, bpmnjs) {
  let undrawn = [];
  eventBus.on("import.done", () => {
    undrawn = [];
    for (const diagram of bpmnjs.getDefinitions()?.diagrams || []) {
      const plane = diagram.plane;
      for (const di of plane ? plane.get("planeElement") : []) {
        if (!di.bpmnElement || !elementRegistry.get(di.bpmnElement.id)) undrawn.push([plane, di]);
      }
    }
  });
  eventBus.on("saveXML.start", 1000, () => {
    for (const [plane, di] of undrawn) {
      const list = plane.get("planeElement");
      if (!list.includes(di)) list.push(di);
    }
  });
}
KeepUndrawnDi.$inject = ["eventBus", "elementRegistry", "bpmnjs"];
const KeepUndrawnDiModule = { __init__: ["keepUndrawnDi"], keepUndrawnDi: ["type", KeepUndrawnDi] };

// Groups of the Camunda properties panel for what Fallwerk does not run (docs/bpmn-support.md): listeners
// and input/output mappings are refused by the check, the rest would be ignored. Not offered, so that
// nobody models what will not happen; a model that has them still shows them as findings.
const NOT_RUN = new Set([
  "AsynchronousContinuations", "JobExecution", "ExecutionListener", "TaskListener", "Input", "Output",
  "ConnectorInput", "ConnectorOutput", "FieldInjection", "HistoryCleanup", "Tasklist", "CandidateStarter",
  "ExternalTask", "BusinessKey", "InMapping", "OutMapping", "InMappingPropagation", "OutMappingPropagation",
].map((name) => `CamundaPlatform__${name}`));

function WithoutGroupsNotRun(propertiesPanel) {
  propertiesPanel.registerProvider(1, this); // the lowest priority: after the Camunda provider added them
}
WithoutGroupsNotRun.prototype.getGroups = () => (groups) => groups.filter((group) => !NOT_RUN.has(group.id));
WithoutGroupsNotRun.$inject = ["propertiesPanel"];
const WithoutGroupsNotRunModule = { __init__: ["withoutGroupsNotRun"], withoutGroupsNotRun: ["type", WithoutGroupsNotRun] };

export function create(container, panel) {
  const options = {
    container,
    moddleExtensions: { camunda: camundaModdle },
    additionalModules: [CamundaBehaviorsModule, KeepUndrawnDiModule],
  };
  if (panel) {
    options.propertiesPanel = { parent: panel };
    options.additionalModules = [
      BpmnPropertiesPanelModule,
      BpmnPropertiesProviderModule,
      CamundaPlatformPropertiesProviderModule,
      WithoutGroupsNotRunModule,
      CamundaBehaviorsModule,
      KeepUndrawnDiModule,
      GermanTranslateModule,
    ];
  }
  return new BpmnModeler(options);
}

// Namespace declarations that are used only inside attribute values (xsi:type="tns:tFoo",
// typeRef="xsd:string", structureRef="ns:Order") are dropped by the XML writer because no element or
// attribute name uses them; the values would then name an undeclared prefix. Put them back.
const QNAME_VALUE = /^([A-Za-z_][\w.-]*):[A-Za-z_][\w.-]*$/;

export function keepValueNamespaces(original, saved) {
  const parser = new DOMParser();
  const before = parser.parseFromString(original, "application/xml").documentElement;
  const after = parser.parseFromString(saved, "application/xml");
  const root = after.documentElement;
  if (!before || !root || after.getElementsByTagName("parsererror").length) return saved;
  const declared = {};
  for (const attr of Array.from(before.attributes)) {
    if (attr.name.startsWith("xmlns:")) declared[attr.name.slice(6)] = attr.value;
  }
  const missing = new Set();
  const visit = (node) => {
    for (const attr of Array.from(node.attributes || [])) {
      const match = QNAME_VALUE.exec(attr.value.trim());
      if (match && declared[match[1]] && !node.lookupNamespaceURI(match[1])) missing.add(match[1]);
    }
    for (const child of Array.from(node.children || [])) visit(child);
  };
  visit(root);
  if (!missing.size) return saved;
  const declarations = Array.from(missing).map((p) => ` xmlns:${p}="${declared[p].replace(/"/g, "&quot;")}"`).join("");
  // add the declarations to the root element's start tag, keeping the writer's formatting
  return saved.replace(/<([A-Za-z_][\w.-]*:)?definitions\b/, (tag) => tag + declarations);
}

// The XML reader maps names by the prefixes of its packages (bpmn, bpmndi, dc, di, camunda, ...). A document
// that binds one of these prefixes to another namespace (MIWG C.1.1: xmlns:camunda="http://activiti.org/bpmn")
// would be read with a made-up prefix that the writer cannot declare, and saving fails. Renaming such a
// prefix changes nothing in the document's meaning (names are namespace URI + local name).
const PACKAGE_PREFIXES = {
  bpmn: "http://www.omg.org/spec/BPMN/20100524/MODEL",
  bpmndi: "http://www.omg.org/spec/BPMN/20100524/DI",
  dc: "http://www.omg.org/spec/DD/20100524/DC",
  di: "http://www.omg.org/spec/DD/20100524/DI",
  bioc: "http://bpmn.io/schema/bpmn/biocolor/1.0",
  color: "http://www.omg.org/spec/BPMN/non-normative/color/1.0",
  camunda: "http://camunda.org/schema/1.0/bpmn",
};
const XMLNS = "http://www.w3.org/2000/xmlns/";

export function renameClashingPrefixes(xml) {
  const doc = new DOMParser().parseFromString(xml, "application/xml");
  if (doc.getElementsByTagName("parsererror").length) return xml;
  const renamed = {};
  const all = [doc.documentElement, ...doc.documentElement.getElementsByTagName("*")];
  for (const element of all) {
    for (const attr of Array.from(element.attributes)) {
      const prefix = attr.name.startsWith("xmlns:") ? attr.name.slice(6) : null;
      if (prefix && PACKAGE_PREFIXES[prefix] && PACKAGE_PREFIXES[prefix] !== attr.value) {
        let fresh = `${prefix}_1`;
        for (let i = 2; Object.values(renamed).includes(fresh) || xml.includes(`xmlns:${fresh}=`); i++) fresh = `${prefix}_${i}`;
        renamed[`${prefix} ${attr.value}`] = renamed[`${prefix} ${attr.value}`] || fresh;
      }
    }
  }
  if (!Object.keys(renamed).length) return xml;
  const qname = (node) => {
    const fresh = node.prefix && renamed[`${node.prefix} ${node.namespaceURI}`];
    return fresh ? `${fresh}:${node.localName}` : node.nodeName;
  };
  const out = document.implementation.createDocument(null, null, null);
  const copy = (node) => {
    switch (node.nodeType) {
      case Node.ELEMENT_NODE: {
        const element = out.createElementNS(node.namespaceURI, qname(node));
        for (const attr of Array.from(node.attributes)) {
          if (attr.namespaceURI === XMLNS) {
            const prefix = attr.prefix === "xmlns" ? attr.localName : null;
            const fresh = prefix && renamed[`${prefix} ${attr.value}`];
            element.setAttributeNS(XMLNS, fresh ? `xmlns:${fresh}` : attr.name, attr.value);
          } else {
            element.setAttributeNS(attr.namespaceURI, qname(attr), attr.value);
          }
        }
        for (const child of Array.from(node.childNodes)) element.append(copy(child));
        return element;
      }
      case Node.CDATA_SECTION_NODE: return out.createCDATASection(node.data);
      case Node.COMMENT_NODE: return out.createComment(node.data);
      case Node.PROCESSING_INSTRUCTION_NODE: return out.createProcessingInstruction(node.target, node.data);
      default: return out.createTextNode(node.textContent);
    }
  };
  out.append(copy(doc.documentElement));
  return new XMLSerializer().serializeToString(out);
}

// A carriage return inside an attribute value (MIWG labels: name="Invoice&#13;&#10;approved?") is written
// as a raw character, which every XML reader turns into a space. Write it as a character reference.
export function keepCarriageReturns(saved) {
  if (!saved.includes("\r")) return saved;
  return saved.replace(/="([^"]*)"/g, (match, value) => (value.includes("\r") ? `="${value.replace(/\r/g, "&#13;")}"` : match));
}

export function repairSaved(original, saved) {
  return keepCarriageReturns(keepValueNamespaces(original, saved));
}

export async function roundTrip(container, xml) {
  const modeler = create(container);
  const { warnings } = await modeler.importXML(renameClashingPrefixes(xml));
  const { xml: saved } = await modeler.saveXML({ format: true });
  modeler.destroy();
  return { xml: repairSaved(xml, saved), warnings: warnings.map((w) => w.message) };
}

window.fallwerkModeller = { create, roundTrip, repairSaved, renameClashingPrefixes };

// --- the page ------------------------------------------------------------------------------------------
const TEXT = {
  saved: "Entwurf gespeichert (Stand %s).",
  conflict: "Dieser Entwurf wurde inzwischen von jemand anderem gespeichert. Ihre Fassung trotzdem speichern und die andere überschreiben?",
  checking: "Prüfe …",
  noFindings: "Keine Hinweise und keine Fehler.",
  deployed: "Veröffentlicht: %s.",
  unchanged: "Keine Änderung gegenüber der veröffentlichten Version – nichts veröffentlicht.",
  newerVersion: "Seit diesem Entwurf wurde eine neuere Version veröffentlicht. Trotzdem veröffentlichen? Die Änderungen der neueren Version gehen dann verloren.",
  failed: "Das hat nicht geklappt: %s",
  error: "Fehler",
  warning: "Hinweis",
};

function fmt(text, value) {
  return text.replace("%s", value);
}

class Page {
  constructor(root) {
    this.root = root;
    this.data = root.dataset;
    this.revision = Number(this.data.revision);
    this.status = document.getElementById(this.data.statusId);
    this.findings = document.getElementById(this.data.findingsId);
    this.warnings = document.getElementById(this.data.warningsId);
    this.modeler = create(root.querySelector("[data-canvas]"), root.querySelector("[data-properties]"));
    window.fallwerkModeller.page = this;
  }

  async open() {
    const response = await fetch(this.data.xmlUrl, { credentials: "same-origin" });
    this.original = renameClashingPrefixes(await response.text());
    await this.modeler.importXML(this.original);
    this.modeler.get("canvas").zoom("fit-viewport");
    this.root.dataset.ready = "true";
    this.groups();
    for (const button of document.querySelectorAll("[data-action]")) {
      button.addEventListener("click", () => this.run(button.dataset.action, button));
    }
  }

  say(message, kind = "info") {
    this.status.textContent = message;
    this.status.dataset.kind = kind;
  }

  async xml() {
    const { xml } = await this.modeler.saveXML({ format: true });
    return repairSaved(this.original, xml);
  }

  async run(action, button) {
    button.disabled = true;
    try {
      if (action === "save") await this.save();
      if (action === "check") await this.check();
      if (action === "deploy") await this.deploy();
    } catch (error) {
      this.say(fmt(TEXT.failed, error.message || error), "error");
    } finally {
      button.disabled = false;
    }
  }

  async save(overwrite = false) {
    const { status, payload } = await post(this.data.saveUrl, this.data.csrf, {
      bpmn: await this.xml(), revision: this.revision, overwrite,
    });
    if (status === 409 && payload.code === "draft_conflict" && !overwrite) {
      if (window.confirm(payload.message ? `${payload.message}\n\n${TEXT.conflict}` : TEXT.conflict)) return this.save(true);
      throw new Error(payload.message || TEXT.conflict);
    }
    if (status !== 200) throw new Error(payload.message || status);
    this.revision = payload.revision;
    this.root.dataset.revision = String(this.revision);
    this.showWarnings(payload.warnings || []);
    this.say(fmt(TEXT.saved, payload.revision), "success");
    return payload;
  }

  showWarnings(warnings) {
    this.warnings.replaceChildren(...warnings.map((w) => {
      const item = document.createElement("li");
      item.textContent = w.text || w.message;
      return item;
    }));
    this.warnings.closest("[data-warnings]").hidden = !warnings.length;
  }

  async check() {
    await this.save();
    this.say(TEXT.checking);
    const { status, payload } = await post(this.data.checkUrl, this.data.csrf, { revision: this.revision });
    if (status !== 200) throw new Error(payload.message || status);
    this.showFindings(payload.findings);
    this.say(payload.summary, payload.ok ? "success" : "error");
    return payload;
  }

  showFindings(findings) {
    const canvas = this.modeler.get("canvas");
    const registry = this.modeler.get("elementRegistry");
    for (const element of registry.getAll()) {
      canvas.removeMarker(element.id, "finding-error");
      canvas.removeMarker(element.id, "finding-warning");
    }
    const items = findings.map((finding) => {
      const item = document.createElement("li");
      item.className = `finding finding-${finding.severity}`;
      const label = document.createElement("strong");
      label.textContent = `${finding.severity === "error" ? TEXT.error : TEXT.warning}: `;
      const known = registry.get(finding.element_id);
      let target;
      if (known) {
        target = document.createElement("button");
        target.type = "button";
        target.className = "link-button";
        target.dataset.elementId = finding.element_id;
        target.addEventListener("click", () => this.select(finding.element_id));
        canvas.addMarker(finding.element_id, `finding-${finding.severity}`);
      } else {
        target = document.createElement("span");
      }
      target.textContent = finding.element_name ? `${finding.element_name} (${finding.element_id})` : finding.element_id;
      const message = document.createElement("span");
      message.textContent = ` – ${finding.message}` + (finding.file ? ` (${finding.file})` : "");
      item.append(label, target, message);
      return item;
    });
    if (!items.length) {
      const item = document.createElement("li");
      item.textContent = TEXT.noFindings;
      items.push(item);
    }
    this.findings.replaceChildren(...items);
  }

  select(id) {
    const element = this.modeler.get("elementRegistry").get(id);
    if (!element) return;
    this.modeler.get("selection").select(element);
    this.modeler.get("canvas").scrollToElement(element);
    this.root.querySelector("[data-canvas]").focus();
  }

  async deploy(force = false) {
    await this.save();
    const { status, payload } = await post(this.data.deployUrl, this.data.csrf, { revision: this.revision, force });
    if (status === 409 && payload.code === "newer_version" && !force) {
      if (window.confirm(`${payload.message}\n\n${TEXT.newerVersion}`)) return this.deploy(true);
      throw new Error(payload.message);
    }
    if (status === 422) {
      this.showFindings(payload.findings || []);
      throw new Error(payload.message);
    }
    if (status !== 200) throw new Error(payload.message || status);
    if (payload.findings) this.showFindings(payload.findings);
    if (!payload.created.length) {
      this.say(TEXT.unchanged, "info");
      return payload;
    }
    this.say(fmt(TEXT.deployed, payload.created.map((d) => `${d.name} – Version ${d.version}`).join(", ")), "success");
    if (payload.next) window.location.assign(payload.next);
    return payload;
  }

  async groups() {
    // candidate groups: a datalist of the real units and unit:role pairs for the properties panel's field
    if (!this.data.groupsUrl) return;
    const response = await fetch(this.data.groupsUrl, { credentials: "same-origin" });
    if (!response.ok) return;
    const list = document.createElement("datalist");
    list.id = "fallwerk-candidate-groups";
    for (const group of await response.json()) {
      const option = document.createElement("option");
      option.value = group.value;
      option.label = group.label;
      list.append(option);
    }
    document.body.append(list);
    const attach = () => {
      for (const input of this.root.querySelectorAll("input[name='candidateGroups']")) {
        if (!input.getAttribute("list")) input.setAttribute("list", list.id);
      }
    };
    new MutationObserver(attach).observe(this.root.querySelector("[data-properties]"), { childList: true, subtree: true });
    attach();
  }
}

const root = document.querySelector("[data-modeller]");
if (root) {
  const page = new Page(root);
  page.open().catch((error) => page.say(fmt(TEXT.failed, error.message || error), "error"));
}
