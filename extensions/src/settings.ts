/**
 * JupyterLab's settings per person, kept in the person's own browser.
 *
 * Stock JupyterLab keeps user settings as files of the workspace server: one folder for the
 * whole team, which every kernel of the dossier could write. A kernel that rebound a
 * colleague's Ctrl+S to "run all cells" made the colleague run code they did not choose,
 * recorded as them (issue 16's red team). This connector replaces the stock one (disabled in
 * labconfig/page_config.json): it takes from the server only what root installed (the
 * plugins' schemas and the installation's default overrides) and keeps the person's own
 * values in their browser's localStorage, under their hub name, so that two people who share
 * a browser profile keep theirs apart too. The server's settings folder is an empty one of
 * root's in the sandbox (isolation/environment.py): nothing a kernel writes is a setting.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { PageConfig } from '@jupyterlab/coreutils';
import { Setting } from '@jupyterlab/services';
import { ISettingConnector, ISettingRegistry } from '@jupyterlab/settingregistry';

/** The localStorage key of a person's values for one plugin. */
export function storageKey(person: string, plugin: string): string {
  return `dossier-lab:settings:${person}:${plugin}`;
}

/** Where values are kept: localStorage, or a page's memory where the browser refuses it. */
export type Store = Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>;

/**
 * Schemas and defaults from the server, user values from localStorage. `raw` is the only
 * user part the setting registry reads (it validates and composes `data` from it), so it is
 * replaced whole: whatever the server says a user set is never seen.
 */
export class PersonalSettingConnector implements ISettingConnector {
  constructor(
    private readonly server: Setting.IManager,
    private readonly person: string,
    private readonly storage: Store
  ) {}

  async fetch(id: string): Promise<ISettingRegistry.IPlugin | undefined> {
    const plugin = await this.server.fetch(id);
    return plugin ? this._personal(plugin) : undefined;
  }

  async list(
    query: 'active' | 'all' | 'ids' = 'all'
  ): Promise<{ ids: string[]; values: ISettingRegistry.IPlugin[] }> {
    const { isDisabled } = PageConfig.Extension;
    const listed = await this.server.list(query === 'ids' ? 'ids' : undefined);
    const active = (id: string) => query !== 'active' || !isDisabled(id);
    return {
      ids: listed.ids.filter(active),
      values: (listed.values ?? [])
        .filter(plugin => active(plugin.id))
        .map(plugin => this._personal(plugin))
    };
  }

  async save(id: string, raw: string): Promise<void> {
    this.storage.setItem(storageKey(this.person, id), raw);
  }

  async remove(id: string): Promise<void> {
    this.storage.removeItem(storageKey(this.person, id));
  }

  private _personal(plugin: ISettingRegistry.IPlugin): ISettingRegistry.IPlugin {
    const raw = this.storage.getItem(storageKey(this.person, plugin.id)) ?? '{}';
    return { ...plugin, raw, data: { composite: {}, user: {} } };
  }
}

/** localStorage, or the page's memory where the browser refuses it (settings then last
 * until the page is closed, and still reach no one else). */
function browserStorage(): Store {
  try {
    const storage = window.localStorage;
    storage.getItem('dossier-lab:settings'); // throws where storage is blocked
    return storage;
  } catch {
    const memory = new Map<string, string>();
    return {
      getItem: key => memory.get(key) ?? null,
      setItem: (key, value) => void memory.set(key, value),
      removeItem: key => void memory.delete(key)
    };
  }
}

export const settingsPlugin: JupyterFrontEndPlugin<ISettingConnector> = {
  id: 'dossier-lab:settings-connector',
  description: "Each person's JupyterLab settings, in their own browser, out of kernels' reach.",
  autoStart: true,
  provides: ISettingConnector,
  activate: (app: JupyterFrontEnd) => {
    const person = PageConfig.getOption('hubUser'); // who is signed in, not the workspace
    return new PersonalSettingConnector(app.serviceManager.settings, person, browserStorage());
  }
};
