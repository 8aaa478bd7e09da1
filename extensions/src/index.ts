import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { DossierPanel } from './panel';

const ICON = new LabIcon({
  name: 'dossier-lab:dossier',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">' +
    '<path class="jp-icon3" fill="#616161" d="M4 4h6l2 2h8v14H4zM6 8v10h12V8z"/></svg>'
});

/** The "Dossier" panel in the left sidebar of a dossier workspace. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'dossier-lab:panel',
  description: 'The dossier: its approved views and report runs, inside the workspace.',
  autoStart: true,
  requires: [ILabShell, INotebookTracker],
  activate: (app: JupyterFrontEnd, shell: ILabShell, tracker: INotebookTracker) => {
    const panel = new DossierPanel(tracker);
    panel.title.icon = ICON;
    shell.add(panel, 'left', { rank: 50 });
  }
};

export default plugin;
