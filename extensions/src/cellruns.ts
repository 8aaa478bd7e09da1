/**
 * "Run by b.devries, 14:02" under each code cell of the open notebook (issue 16).
 *
 * The record is the dossierhub service's (`executions/latest`): the relay outside the workspace
 * wrote it from the login that opened the kernel connection, so the panel only shows it and
 * decides nothing. Cells are matched by JupyterLab's cell id, the id every browser puts into an
 * execute_request's metadata (`cellId`): with real-time collaboration it is the same for every
 * collaborator. "Code changed since" compares the sha256 of the cell's source, which is exactly
 * the code JupyterLab sends (CodeCell.execute sends `sharedModel.getSource()` as it is), with the
 * hash the relay recorded.
 */

import { Notebook, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import type { INotebookTracker } from '@jupyterlab/notebook';
import type { KernelMessage } from '@jupyterlab/services';
import { PanelLayout, Widget } from '@lumino/widgets';

import type { DossierService, ICellRun } from './service';
import { whenShort } from './when';

type Cell = Notebook['widgets'][number];

/** The relay hands batches to the service every ~2 s and the service takes them in every ~1 s:
 * ask when most runs' records are in, once more for the rest, and later again for a machine
 * under load (on CI a run's records came after 6 s, and its cell was left unmarked until the
 * next run). */
export const REFRESH_AFTER_MS = [2000, 6000, 15000, 30000];
const EDIT_SETTLE_MS = 300;

const OUTCOME_WORDS: Record<string, string> = {
  error: 'ended in an error',
  aborted: 'aborted'
};

/** Hex sha256 of the UTF-8 text, as the relay hashes the code; null where the browser offers
 * no SubtleCrypto (a page served over plain HTTP from another host than localhost). */
export async function sha256Hex(text: string): Promise<string | null> {
  const subtle = window.crypto?.subtle;
  if (!subtle) {
    return null;
  }
  const digest = await subtle.digest('SHA-256', new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), byte => byte.toString(16).padStart(2, '0')).join('');
}

/** The notebook's path as the workspace names it in /api/sessions, which is what the relay
 * records; the document's own path while no kernel session exists yet. */
export function notebookPath(panel: NotebookPanel): string {
  return panel.sessionContext.session?.path ?? panel.context.localPath;
}

/** The marker's words: who, when, how it ended when not ok, and whether the code changed. */
export function markerChildren(run: ICellRun, changed: boolean): (Node | string)[] {
  const person = document.createElement('span');
  person.className = 'dh-cell-run-person';
  person.textContent = run.person;
  const children: (Node | string)[] = ['Run by ', person, ', ', whenShort(run.at)];
  const outcome = run.outcome ? OUTCOME_WORDS[run.outcome] : undefined;
  if (outcome) {
    children.push(` · ${outcome}`);
  }
  if (changed) {
    const note = document.createElement('span');
    note.className = 'dh-warning dh-cell-run-changed';
    note.textContent = ' · code changed since';
    note.title = `The code of that run began: ${run.first_line}`;
    children.push(note);
  }
  return children;
}

/** Follows the notebook in focus and keeps one marker under each code cell that has a record. */
export class CellRuns {
  private panel: NotebookPanel | null = null;
  private runs: Record<string, ICellRun> = {};
  private markers = new WeakMap<Cell, Widget>();
  private timers: number[] = [];
  private editTimer = 0;
  private ranSinceIdle = false;
  private asked = 0; // drops an answer that arrives after a newer question
  private drawn = 0; // drops a drawing overtaken by a newer one while hashing
  private warned = false;

  constructor(
    tracker: INotebookTracker,
    private service: DossierService
  ) {
    tracker.currentChanged.connect((_, panel) => this.follow(panel));
    NotebookActions.executed.connect((_, { notebook }) => {
      if (notebook === this.panel?.content) {
        this.refreshSoon();
      }
    });
    this.follow(tracker.currentWidget);
  }

  private follow(panel: NotebookPanel | null): void {
    if (panel === this.panel) {
      return;
    }
    if (this.panel) {
      this.panel.sessionContext.iopubMessage.disconnect(this.onIopub, this);
      this.panel.context.model.contentChanged.disconnect(this.onEdit, this);
    }
    this.timers.forEach(timer => window.clearTimeout(timer));
    this.timers = [];
    this.runs = {};
    this.ranSinceIdle = false;
    this.panel = panel;
    if (!panel) {
      return;
    }
    // a collaborator's run reaches this browser as the kernel's broadcast, not as `executed`
    panel.sessionContext.iopubMessage.connect(this.onIopub, this);
    panel.context.model.contentChanged.connect(this.onEdit, this);
    void Promise.all([panel.context.ready, panel.sessionContext.ready]).then(() => {
      if (panel === this.panel) {
        void this.refresh();
      }
    });
  }

  private onIopub(_: unknown, message: KernelMessage.IMessage): void {
    const type = message.header.msg_type;
    if (type === 'execute_input') {
      this.ranSinceIdle = true;
    } else if (type === 'status' && this.ranSinceIdle) {
      if ((message as KernelMessage.IStatusMsg).content.execution_state === 'idle') {
        this.ranSinceIdle = false;
        this.refreshSoon();
      }
    }
  }

  /** A cell edited, added or moved: compare its code again and place the markers anew. */
  private onEdit(): void {
    window.clearTimeout(this.editTimer);
    this.editTimer = window.setTimeout(() => void this.draw(), EDIT_SETTLE_MS);
  }

  private refreshSoon(): void {
    this.timers.forEach(timer => window.clearTimeout(timer));
    this.timers = REFRESH_AFTER_MS.map(delay => window.setTimeout(() => void this.refresh(), delay));
  }

  private async refresh(): Promise<void> {
    const panel = this.panel;
    if (!panel || panel.isDisposed) {
      return;
    }
    const asked = ++this.asked;
    let runs: Record<string, ICellRun>;
    try {
      runs = await this.service.latestRuns(notebookPath(panel));
    } catch (error) {
      if (!this.warned) {
        this.warned = true; // once: the markers are a help, the notebook works without them
        console.warn(`Dossier: who ran each cell is not available: ${(error as Error).message}`);
      }
      return;
    }
    if (asked === this.asked && panel === this.panel) {
      this.runs = runs;
      await this.draw();
    }
  }

  private async draw(): Promise<void> {
    const panel = this.panel;
    if (!panel || panel.isDisposed) {
      return;
    }
    const drawn = ++this.drawn;
    const cells = panel.content.widgets.slice();
    const wanted = await Promise.all(
      cells.map(async cell => {
        const run = cell.model.type === 'code' ? this.runs[cell.model.id] : undefined;
        if (!run) {
          return null;
        }
        const now = await sha256Hex(cell.model.sharedModel.getSource());
        return { run, changed: now !== null && now !== run.code_sha256 };
      })
    );
    if (drawn !== this.drawn || panel !== this.panel) {
      return;
    }
    cells.forEach((cell, index) => {
      const want = wanted[index];
      if (want) {
        this.mark(cell, want.run, want.changed);
      } else {
        this.markers.get(cell)?.dispose();
        this.markers.delete(cell);
      }
    });
  }

  private mark(cell: Cell, run: ICellRun, changed: boolean): void {
    let marker = this.markers.get(cell);
    if (!marker || marker.isDisposed) {
      const input = cell.inputArea?.parent;
      if (!input || cell.isDisposed) {
        // a cell JupyterLab has not drawn yet (windowing): mark it once it is
        void cell.ready.then(() => this.onEdit());
        return;
      }
      marker = new Widget();
      marker.addClass('dh-cell-run');
      const layout = cell.layout as PanelLayout;
      layout.insertWidget(layout.widgets.indexOf(input) + 1, marker);
      this.markers.set(cell, marker);
    }
    const node = marker.node;
    node.dataset.cellId = cell.model.id;
    node.dataset.person = run.person;
    node.dataset.changed = String(changed);
    node.replaceChildren(...markerChildren(run, changed));
  }
}
