import type { JupyterFrontEnd } from '@jupyterlab/application';
import { URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { CellRuns } from './cellruns';
import { DossierService, IParameter, IRun, ITemplate, ServiceError } from './service';
import { when } from './when';

interface IColumn {
  name: string;
  type: string;
  kind: string;
  description: string;
}

interface IView {
  name: string;
  description: string;
  rows: number | null;
  built_at: string | null;
  columns: IColumn[];
}

export interface IDossierInfo {
  id: string;
  title: string;
  purpose: string;
  expires: string;
  days_left: number | null;
  expired: boolean;
  expires_soon: boolean;
  expiry_warning_days: number;
  built_at: string;
  views: IView[];
  service_url: string;
}

const RECENT_RUNS = 8;
const POLL_MS = 1000;

/** Build an element with a class, text and children in one call. */
function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'class') {
      node.className = value;
    } else {
      node.setAttribute(name, value);
    }
  }
  node.append(...children);
  return node;
}

export async function fetchInfo(): Promise<IDossierInfo> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'dossier', 'info');
  const response = await ServerConnection.makeRequest(url, {}, settings);
  const body = await response.json();
  if (!response.ok) {
    throw new Error(body.message ?? response.statusText);
  }
  return body as IDossierInfo;
}

/** The query a click on a view puts in the notebook. */
export function queryFor(view: string): string {
  return `%%sql\nSELECT *\nFROM ${view}\nLIMIT 100`;
}

export class DossierPanel extends Widget {
  private service: DossierService | null = null;
  private runList = el('ul', { class: 'dh-runs' });
  private inbox = el('p', { class: 'dh-inbox', 'aria-live': 'polite' });
  private watched = new Set<string>();

  constructor(
    private tracker: INotebookTracker,
    private commands: JupyterFrontEnd['commands']
  ) {
    super();
    this.id = 'dossier-lab-panel';
    this.addClass('dh-panel');
    this.title.caption = 'Dossier';
    this.node.append(el('p', { class: 'dh-muted' }, 'Loading the dossier…'));
    void this.load();
  }

  private async load(): Promise<void> {
    let info: IDossierInfo;
    try {
      info = await fetchInfo();
    } catch (error) {
      this.node.replaceChildren(el('p', { class: 'dh-error' }, String((error as Error).message)));
      return;
    }
    this.service = new DossierService(info.service_url, info.id);
    new CellRuns(this.tracker, this.service); // lives as long as the panel: the whole session
    this.node.replaceChildren(this.header(info), this.views(info), this.reportsSection());
    void this.loadReports();
  }

  private header(info: IDossierInfo): HTMLElement {
    // the server decides (dossier_kernel.expiry, the rule the hub's pages use too)
    const warn = info.expired || info.expires_soon;
    return el(
      'header',
      { class: 'dh-header' },
      el('h2', { class: 'dh-title' }, info.title),
      el('p', { class: 'dh-purpose' }, info.purpose),
      el(
        'p',
        {
          class: warn ? 'dh-expiry dh-warning' : 'dh-expiry',
          title: `Members are warned from ${info.expiry_warning_days} days before expiry`
        },
        `Usable until ${info.expires}` +
          (info.days_left !== null ? ` (${info.days_left} days left)` : '')
      ),
      el('p', { class: 'dh-muted' }, 'Data built ', when(info.built_at))
    );
  }

  private views(info: IDossierInfo): HTMLElement {
    const section = el('section', { class: 'dh-views' }, el('h3', {}, 'Approved views'));
    for (const view of info.views) {
      // beside the summary, not in it: a button inside a <summary> is a control nested in a
      // control, which screen readers announce as one (axe: nested-interactive)
      const insert = el(
        'button',
        {
          class: 'jp-Button dh-insert',
          title: `Insert a %%sql cell querying ${view.name}`,
          'aria-label': `Query ${view.name}`
        },
        'Query'
      );
      insert.addEventListener('click', event => {
        event.preventDefault();
        void this.insertQuery(view.name);
      });
      const rows = el('tbody');
      for (const column of view.columns) {
        rows.append(
          el(
            'tr',
            { class: 'dh-column', 'data-column': column.name },
            el('td', {}, el('code', {}, column.name)),
            el('td', {}, column.type),
            el('td', { class: 'dh-kind' }, column.kind),
            el('td', {}, column.description)
          )
        );
      }
      section.append(
        el(
          'div',
          { class: 'dh-view', 'data-view': view.name },
          el(
            'details',
            {},
            el(
              'summary',
              {},
              el('span', { class: 'dh-view-name' }, view.name),
              el('span', { class: 'dh-muted' }, ` ${view.rows?.toLocaleString() ?? '?'} rows `)
            ),
            el('p', { class: 'dh-muted' }, view.description),
            el(
              'table',
              { class: 'dh-columns' },
              el(
                'thead',
                {},
                el('tr', {}, ...['column', 'type', 'kind', 'description'].map(h => el('th', {}, h)))
              ),
              rows
            )
          ),
          insert
        )
      );
    }
    return section;
  }

  /** A ready cell in the active notebook (a new Dossier notebook when none is open): reuses
   * an empty selected cell, else one below. */
  private async insertQuery(view: string): Promise<void> {
    let panel = this.tracker.currentWidget;
    if (!panel) {
      try {
        panel = (await this.commands.execute('notebook:create-new', {
          kernelName: 'dossier'
        })) as NotebookPanel;
        await panel.context.ready;
      } catch (error) {
        this.flash(`No new notebook for the query: ${(error as Error).message}`);
        return;
      }
    }
    const notebook = panel.content;
    const active = notebook.activeCell;
    if (!active || active.model.sharedModel.getSource().trim() !== '' || active.model.type !== 'code') {
      NotebookActions.insertBelow(notebook);
    }
    notebook.activeCell?.model.sharedModel.setSource(queryFor(view));
    panel.activate();
  }

  private flash(text: string): void {
    const note = el('p', { class: 'dh-error dh-flash' }, text);
    this.node.prepend(note);
    window.setTimeout(() => note.remove(), 6000);
  }

  private reportsSection(): HTMLElement {
    return el(
      'section',
      { class: 'dh-reports' },
      el('h3', {}, 'Reports'),
      el('div', { class: 'dh-templates' }, el('p', { class: 'dh-muted' }, 'Loading templates…')),
      el('h4', {}, 'Recent runs'),
      this.inbox,
      this.runList
    );
  }

  private async loadReports(): Promise<void> {
    const holder = this.node.querySelector('.dh-templates') as HTMLElement;
    try {
      const [templates, runs] = await Promise.all([this.service!.templates(), this.service!.runs()]);
      holder.replaceChildren(...templates.map(t => this.templateForm(t)));
      this.showRuns(runs);
    } catch (error) {
      holder.replaceChildren(el('p', { class: 'dh-error' }, (error as Error).message));
    }
  }

  private templateForm(template: ITemplate): HTMLElement {
    const box = el(
      'details',
      { class: 'dh-template', 'data-template': template.name },
      el('summary', {}, template.title, el('span', { class: 'dh-muted' }, ` (${template.name})`))
    );
    if (template.error) {
      box.append(el('p', { class: 'dh-error' }, template.error));
      return box;
    }
    const form = el('form', { class: 'dh-run-form' });
    for (const parameter of template.parameters) {
      form.append(parameterField(template.name, parameter));
    }
    const problem = el('p', { class: 'dh-error dh-form-error' });
    const submit = el('button', { class: 'jp-Button dh-run', type: 'submit' }, `Run ${template.name}`);
    form.append(problem, submit);
    form.addEventListener('submit', event => {
      event.preventDefault();
      void this.startRun(template, form, problem, submit);
    });
    box.append(form);
    return box;
  }

  private async startRun(
    template: ITemplate,
    form: HTMLFormElement,
    problem: HTMLElement,
    submit: HTMLButtonElement
  ): Promise<void> {
    const values: Record<string, string> = {};
    for (const parameter of template.parameters) {
      const field = form.elements.namedItem(parameter.name) as HTMLInputElement | null;
      if (field && field.value !== '') {
        values[parameter.name] = field.value;
      }
    }
    form.querySelectorAll('.dh-field-error').forEach(node => (node.textContent = ''));
    problem.textContent = '';
    submit.disabled = true;
    try {
      const { run_id } = await this.service!.start(template.name, values);
      this.showRuns(await this.service!.runs());
      this.watch(run_id);
    } catch (error) {
      const fields = error instanceof ServiceError ? error.fields : {};
      for (const [name, text] of Object.entries(fields)) {
        const slot = form.querySelector(`.dh-field-error[data-for="${CSS.escape(name)}"]`);
        if (slot) {
          slot.textContent = text;
        }
      }
      problem.textContent = (error as Error).message;
    } finally {
      submit.disabled = false;
    }
  }

  private showRuns(runs: IRun[]): void {
    // the server decided each run's next step; the panel only counts its answers
    const mine = runs.filter(run => run.awaiting_your_release).length;
    this.inbox.textContent = mine ? `Awaiting your release (${mine})` : '';
    this.inbox.hidden = !mine;
    const recent = runs.slice(0, RECENT_RUNS);
    this.runList.replaceChildren(...recent.map(run => this.runItem(run)));
    if (recent.length === 0) {
      this.runList.append(el('li', { class: 'dh-muted' }, 'No runs yet.'));
    }
    for (const run of recent) {
      if (run.in_progress) {
        this.watch(run.run_id);
      }
    }
  }

  private runItem(run: IRun, progress = ''): HTMLElement {
    const open = el(
      'a',
      { href: this.service!.runPage(run.run_id), target: '_blank', rel: 'noopener', class: 'dh-open' },
      'open'
    );
    return el(
      'li',
      { class: 'dh-run-item', 'data-run': run.run_id, 'data-status': run.status },
      statusBadge(run),
      ` ${run.template} · ${run.user} · `,
      when(run.finished ?? run.started ?? run.queued),
      ` ${progress}`,
      run.released_words ? el('span', { class: 'dh-muted dh-released' }, ` · ${run.released_words}`) : '',
      run.next_step ? el('span', { class: 'dh-next-step' }, ` · ${run.next_step}`) : '',
      ' ',
      open
    );
  }

  /** Follow a queued or running run until it ends, updating its line in place. */
  private watch(runId: string): void {
    if (this.watched.has(runId)) {
      return;
    }
    this.watched.add(runId);
    const tick = async (): Promise<void> => {
      if (this.isDisposed) {
        return;
      }
      let detail;
      try {
        detail = await this.service!.run(runId);
      } catch {
        window.setTimeout(tick, POLL_MS * 3);
        return;
      }
      const run: IRun = {
        ...detail.provenance,
        run_id: runId,
        in_progress: detail.in_progress,
        succeeded: detail.succeeded,
        released: detail.released,
        released_words: detail.released_words,
        checks_failed: detail.checks_failed,
        awaiting_your_release: detail.awaiting_your_release,
        next_step: detail.next_step
      };
      const progress = detail.progress
        ? `(${detail.progress.cells_done}/${detail.progress.cells_total} cells)`
        : '';
      const line = this.runList.querySelector(`[data-run="${CSS.escape(runId)}"]`);
      line?.replaceWith(this.runItem(run, progress));
      if (run.in_progress) {
        window.setTimeout(tick, POLL_MS);
      } else {
        this.watched.delete(runId);
      }
    };
    void tick();
  }
}

/** A run's status; "succeeded · checks failed" in words and a mark, not colour alone. */
function statusBadge(run: IRun): HTMLElement {
  if (run.checks_failed) {
    return el(
      'span',
      { class: 'dh-status dh-status-checks-failed', 'data-checks-failed': 'true' },
      el('span', { 'aria-hidden': 'true' }, '⚠ '),
      `${run.status} · checks failed`
    );
  }
  return el('span', { class: `dh-status dh-status-${run.status}` }, run.status);
}

function parameterField(template: string, parameter: IParameter): HTMLElement {
  const id = `dh-${template}-${parameter.name}`;
  let input: HTMLInputElement | HTMLSelectElement;
  const value = parameter.default === null || parameter.default === undefined ? '' : String(parameter.default);
  const choices = parameter.type === 'bool' ? ['true', 'false'] : parameter.choices;
  if (choices && choices.length) {
    input = el('select', { id, name: parameter.name });
    for (const choice of choices) {
      const option = el('option', { value: String(choice) }, String(choice));
      option.selected = String(choice) === value;
      input.append(option);
    }
  } else {
    const type = { int: 'number', float: 'number', date: 'date' }[parameter.type as string] ?? 'text';
    input = el('input', { id, name: parameter.name, type, value });
    if (parameter.step !== null && parameter.step !== undefined) {
      input.setAttribute('step', String(parameter.step)); // the template's grid (differencing)
    } else if (parameter.type === 'float') {
      input.setAttribute('step', 'any');
    }
    if (parameter.min !== null && parameter.min !== undefined) {
      input.setAttribute('min', String(parameter.min));
    }
    if (parameter.max !== null && parameter.max !== undefined) {
      input.setAttribute('max', String(parameter.max));
    }
  }
  return el(
    'div',
    { class: 'dh-field' },
    el('label', { for: id }, `${parameter.name} (${parameter.type})`),
    input,
    el('div', { class: 'dh-help' }, parameter.description ?? ''),
    el('div', { class: 'dh-error dh-field-error', 'data-for': parameter.name })
  );
}
