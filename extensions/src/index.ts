import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { LabIcon } from '@jupyterlab/ui-components';

import { DossierPanel } from './panel';
import { settingsPlugin } from './settings';
import { sqlTableFactory } from './sqltable';

// a database (three stacked discs): the file browser's folder sits right above this tab
const ICON = new LabIcon({
  name: 'dossier-lab:dossier',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">' +
    '<path class="jp-icon3" fill="#616161" d="M12 2C7.6 2 4 3.3 4 5v14c0 1.7 3.6 3 8 3s8-1.3 ' +
    '8-3V5c0-1.7-3.6-3-8-3zm6 17c0 .5-2.1 1-6 1s-6-.5-6-1v-2.3c1.5.7 3.6 1 6 1s4.5-.3 ' +
    '6-1zm0-5c0 .5-2.1 1-6 1s-6-.5-6-1v-2.3c1.5.7 3.6 1 6 1s4.5-.3 6-1zm-6-4c-3.9 0-6-.5-6-1' +
    'V7.7C7.5 8.4 9.6 8.7 12 8.7s4.5-.3 6-1V9c0 .5-2.1 1-6 1zm0-3.3c-3.9 0-6-.9-6-1.7S8.1 ' +
    '3.3 12 3.3s6 .9 6 1.7-2.1 1.7-6 1.7z"/></svg>'
});

/** The "Dossier" panel in the left sidebar of a dossier workspace. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'dossier-lab:panel',
  description: 'The dossier: its approved views and report runs, inside the workspace.',
  autoStart: true,
  requires: [ILabShell, INotebookTracker],
  activate: (app: JupyterFrontEnd, shell: ILabShell, tracker: INotebookTracker) => {
    const panel = new DossierPanel(tracker, app.commands);
    panel.title.icon = ICON;
    shell.add(panel, 'left', { rank: 50 });
  }
};

/** `%%sql` results as a sortable table, drawn by this extension (sqltable.ts). */
const sqlTable: JupyterFrontEndPlugin<void> = {
  id: 'dossier-lab:sql-table',
  description: 'Shows %%sql results as a sortable table.',
  autoStart: true,
  requires: [IRenderMimeRegistry],
  activate: (app: JupyterFrontEnd, rendermime: IRenderMimeRegistry) => {
    rendermime.addFactory(sqlTableFactory);
  }
};

export default [plugin, sqlTable, settingsPlugin];
