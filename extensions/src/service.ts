/**
 * Talking to the hub-side dossierhub service as the person in front of the screen.
 *
 * Decisions such as "may this person start a run" are the service's, taken on the person's
 * own login: the browser's session with the service (JupyterHub OAuth, cookie scoped to
 * /services/dossierhub/), never the workspace server's token, which every kernel can read.
 * A hidden frame opens the service once so that the hub signs the person in to it (the
 * person is already logged in to the hub); the frame's page hands over the xsrf token that
 * JupyterHub requires on cookie-authenticated API calls.
 */

export interface IParameter {
  name: string;
  type: 'str' | 'int' | 'float' | 'bool' | 'date';
  default: unknown;
  choices: unknown[] | null;
  min: unknown;
  max: unknown;
  step?: number | null;
  description: string;
}

export interface ITemplate {
  name: string;
  title: string;
  parameters: IParameter[];
  error: string | null;
}

/** A run's record (provenance.json) as the API sends it. */
export interface IRunRecord {
  run_id: string;
  template: string;
  status: string;
  user: string;
  queued: string | null;
  started: string | null;
  finished: string | null;
  error: string | null;
  checks_passed: boolean | null;
}

/** release.json as written, or the problem with one that cannot be read (still released). */
export type IReleased = { by: string; at?: string; justification?: string | null } | { unreadable: string };

/** What the server decided about a run (reports/records.py): the panel decides none of it. */
export interface IRunState {
  in_progress: boolean;
  succeeded: boolean;
  released: IReleased | null;
  /** "released by …" or "released (record unreadable: …)"; null while unreleased */
  released_words: string | null;
  /** succeeded, but an output check failed (records.RunRecord.checks_failed) */
  checks_failed: boolean;
  /** this person may release it now (roles.may_release, portal.next_step) */
  awaiting_your_release: boolean;
  /** "Awaiting your release", "Waiting for release by …", or null */
  next_step: string | null;
}

export interface IRun extends IRunRecord, IRunState {}

export interface IRunDetail extends IRunState {
  provenance: IRunRecord;
  progress: { cells_done: number; cells_total: number } | null;
}

/** The last recorded execution of one cell (contract: executions/latest, issue 16). The
 * person is the one whose login opened the kernel connection, as the relay recorded it. */
export interface ICellRun {
  person: string;
  at: string;
  /** sha256 of the code as the kernel received it (hex, lower case) */
  code_sha256: string;
  first_line: string;
  outcome: 'ok' | 'error' | 'aborted' | null;
}

export class ServiceError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly fields: Record<string, string> = {}
  ) {
    super(message);
  }
}

const SESSION_TIMEOUT_MS = 20000;

export class DossierService {
  private xsrf: Promise<string> | null = null;

  constructor(
    readonly baseUrl: string,
    readonly dossier: string
  ) {}

  /** The service page for one run, to open in a new tab. */
  runPage(runId: string): string {
    return `${this.baseUrl}dossiers/${this.dossier}/runs/${runId}`;
  }

  templates(): Promise<ITemplate[]> {
    return this.call<ITemplate[]>(`dossiers/${this.dossier}/templates`);
  }

  runs(): Promise<IRun[]> {
    return this.call<IRun[]>(`dossiers/${this.dossier}/runs`);
  }

  run(runId: string): Promise<IRunDetail> {
    return this.call<IRunDetail>(`dossiers/${this.dossier}/runs/${runId}`);
  }

  /** Who last ran each cell of the notebook at `path`, by JupyterLab's cell id. */
  async latestRuns(path: string): Promise<Record<string, ICellRun>> {
    const query = new URLSearchParams({ path }).toString();
    const answer = await this.call<{ cells: Record<string, ICellRun> }>(
      `dossiers/${this.dossier}/executions/latest?${query}`
    );
    return answer.cells ?? {};
  }

  start(template: string, parameters: Record<string, string>): Promise<{ run_id: string }> {
    return this.call(`dossiers/${this.dossier}/runs`, {
      method: 'POST',
      body: JSON.stringify({ template, parameters })
    });
  }

  private async call<T>(path: string, init: RequestInit = {}, retry = true): Promise<T> {
    const token = await this.session();
    const response = await fetch(`${this.baseUrl}api/${path}`, {
      ...init,
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-XSRFToken': token }
    });
    let body: any = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (response.status === 403 && retry && body?.error?.includes('log in')) {
      this.xsrf = null; // the service session ended: sign in again, once
      return this.call<T>(path, init, false);
    }
    if (!response.ok) {
      throw new ServiceError(
        body?.error ?? `${response.status} ${response.statusText}`,
        response.status,
        body?.fields ?? {}
      );
    }
    return body as T;
  }

  private session(): Promise<string> {
    if (this.xsrf === null) {
      this.xsrf = signIn(this.baseUrl).catch(error => {
        this.xsrf = null;
        throw error;
      });
    }
    return this.xsrf;
  }
}

function signIn(baseUrl: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const frame = document.createElement('iframe');
    frame.style.display = 'none';
    frame.setAttribute('aria-hidden', 'true');
    const done = (error: Error | null, token = '') => {
      window.clearTimeout(timer);
      frame.remove();
      if (error) {
        reject(error);
      } else {
        resolve(token);
      }
    };
    const timer = window.setTimeout(
      () => done(new Error('the dossierhub service did not answer; reload to try again')),
      SESSION_TIMEOUT_MS
    );
    frame.addEventListener('load', () => {
      let token: string | undefined;
      try {
        const page = frame.contentWindow as (Window & { jhdata?: { xsrf_token?: string } }) | null;
        if (page?.location.pathname.startsWith(baseUrl)) {
          token = page.jhdata?.xsrf_token;
        }
      } catch {
        token = undefined;
      }
      if (token) {
        done(null, token);
      }
      // else: still on the way through the hub's OAuth redirects; wait for the next load
    });
    frame.src = baseUrl;
    document.body.appendChild(frame);
  });
}
