/**
 * A `%%sql` result as a sortable table (dossier_kernel.sqlcell.frame_table, TABLE_MIME).
 *
 * The kernel sends plain data (the row count, the columns, at most 100 rows); this renderer, a
 * file of the Dossier extension served by the workspace server itself, draws it as text only
 * (textContent, never HTML) and sorts it on a click on a column header. So a result is as
 * useful as itables' widget was, without running any module a kernel names: that widget's
 * front end (anywidget) imported whatever module a member's code gave it, in every colleague's
 * page that showed it, and needed `blob:` in the workspace's Content-Security-Policy.
 *
 * The renderer is "safe" in JupyterLab's sense (it shows untrusted outputs too): every output
 * a colleague saved is untrusted in a workspace, as no notebook is ever trusted there.
 */

import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

export const TABLE_MIME = 'application/vnd.dossier.sql-table.v1+json';

type Value = string | number | boolean | null;

interface IColumn {
  name: string;
  type: string;
  numeric: boolean;
}

/** What the kernel sends, as far as this renderer relies on it. */
export interface ISqlTable {
  count: string;
  columns: IColumn[];
  rows: Value[][];
}

/** The payload when it has the shape the kernel writes, else null (then a notice is shown:
 * a member may put anything into a saved output). */
export function readTable(data: unknown): ISqlTable | null {
  if (typeof data !== 'object' || data === null) {
    return null;
  }
  const { count, columns, rows } = data as Record<string, unknown>;
  const isColumn = (c: unknown): c is IColumn =>
    typeof c === 'object' &&
    c !== null &&
    typeof (c as IColumn).name === 'string' &&
    typeof (c as IColumn).type === 'string' &&
    typeof (c as IColumn).numeric === 'boolean';
  const isValue = (v: unknown): v is Value =>
    v === null || ['string', 'number', 'boolean'].includes(typeof v);
  if (
    typeof count !== 'string' ||
    !Array.isArray(columns) ||
    !columns.every(isColumn) ||
    !Array.isArray(rows) ||
    !rows.every(r => Array.isArray(r) && r.length === columns.length && r.every(isValue))
  ) {
    return null;
  }
  return { count, columns, rows: rows as Value[][] };
}

/** Order of two values of a column: numbers as numbers in a numeric column (a number sent as
 * text because JavaScript cannot hold it exactly still sorts by its value), text in the
 * page's language with digits as numbers; empty values last whichever way. */
export function compareValues(a: Value, b: Value, numeric: boolean, descending: boolean): number {
  if (a === null || b === null) {
    return a === b ? 0 : a === null ? 1 : -1;
  }
  const order = numeric
    ? Number(a) - Number(b) || 0
    : String(a).localeCompare(String(b), undefined, { numeric: true });
  return descending ? -order : order;
}

/** Row indices in the order of a column (stable: equal values keep the kernel's order). */
export function sortedRows(
  table: ISqlTable,
  column: number,
  descending: boolean
): number[] {
  const numeric = table.columns[column].numeric;
  return table.rows
    .map((_, index) => index)
    .sort(
      (i, j) =>
        compareValues(table.rows[i][column], table.rows[j][column], numeric, descending) || i - j
    );
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** The rendered result: the row count, then the table in a box that scrolls. */
export class SqlTable extends Widget implements IRenderMime.IRenderer {
  constructor() {
    super();
    this.addClass('dossier-sql-result');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this.node.textContent = '';
    const table = readTable(model.data[TABLE_MIME]);
    if (table === null) {
      this.node.appendChild(
        element('p', 'dh-error', 'This output is not a %%sql result this workspace can show.')
      );
      return;
    }
    this.node.appendChild(element('p', 'dossier-sql-count', table.count));
    const box = element('div', 'dossier-sql-scroll');
    const grid = element('table', 'dossier-sql-table');
    const body = element('tbody');
    grid.append(this.header(table, body), body);
    box.appendChild(grid);
    this.node.appendChild(box);
    this.fill(table, body, table.rows.map((_, index) => index));
  }

  /** Column headers: a button each (a click or the keyboard sorts), the type below the name. */
  private header(table: ISqlTable, body: HTMLTableSectionElement): HTMLTableSectionElement {
    const head = element('thead');
    const row = element('tr');
    const cells: HTMLTableCellElement[] = [];
    table.columns.forEach((column, index) => {
      const th = element('th');
      th.scope = 'col';
      if (column.numeric) {
        th.classList.add('dossier-sql-numeric');
      }
      const button = element('button', 'dossier-sql-sort');
      button.type = 'button';
      button.title = `Sort by ${column.name}`;
      button.append(
        element('span', 'dossier-sql-name', column.name),
        element('span', 'dossier-sql-type', column.type)
      );
      button.addEventListener('click', () => {
        const descending = th.getAttribute('aria-sort') === 'ascending';
        cells.forEach(other => other.removeAttribute('aria-sort'));
        th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
        this.fill(table, body, sortedRows(table, index, descending));
      });
      th.appendChild(button);
      cells.push(th);
      row.appendChild(th);
    });
    head.appendChild(row);
    return head;
  }

  private fill(table: ISqlTable, body: HTMLTableSectionElement, order: number[]): void {
    body.textContent = '';
    for (const index of order) {
      const tr = element('tr');
      table.rows[index].forEach((value, column) => {
        const td = element('td', undefined, value === null ? 'null' : String(value));
        if (value === null) {
          td.classList.add('dossier-sql-null');
        }
        if (table.columns[column].numeric) {
          td.classList.add('dossier-sql-numeric');
        }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    }
  }
}

/** The factory JupyterLab's output areas take it from: safe, so a colleague's saved result
 * shows too; ranked before HTML, which stays in the bundle for nbconvert and reports. */
export const sqlTableFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [TABLE_MIME],
  defaultRank: 40,
  createRenderer: () => new SqlTable()
};
