// Typed user-facing errors. Anything that is the user's fault (bad config, bad input file, bad
// flag) is a SedPipeError with a message, an optional hint and an exit code; only src/cli.ts turns
// them into output and exit codes. Anything else is a bug and may show a stack trace.

export const EXIT = {
  ok: 0,
  stageFailed: 1,
  usage: 2,
  interrupted: 130,
  /** Stopped by SIGTERM (CI cancel, `timeout`, `docker stop`): 128 + 15. */
  terminated: 143,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class SedPipeError extends Error {
  readonly hint: string | undefined;
  readonly exitCode: ExitCode;

  constructor(message: string, options: { hint?: string; exitCode?: ExitCode; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? EXIT.usage;
  }
}

/** A problem in pipeline.yaml or a params file, with its position. */
export class ConfigError extends SedPipeError {}

/** A bad input file (HDF5, checkpoint, image, archive): the message names the file. */
export class InputError extends SedPipeError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, { ...options, exitCode: EXIT.stageFailed });
  }
}
