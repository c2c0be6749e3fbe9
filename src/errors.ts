// Typed user-facing errors. Anything that is the user's fault (bad config, bad input file, bad
// flag) is a SedPipeError with a message, an optional hint and an exit code; only src/cli.ts turns
// them into output and exit codes (file-system errors such as a full disk it maps itself). Anything
// else is a bug: exit 70, with a stack trace under SED_PIPE_DEBUG=1.

export const EXIT = {
  ok: 0,
  /** A stage failed, or the run could not go on (disk full, read-only workspace...). */
  stageFailed: 1,
  usage: 2,
  /** EX_SOFTWARE: an error that is not a SedPipeError, i.e. a bug in sed-pipe. */
  internal: 70,
  /** Ctrl-C (128 + SIGINT). */
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
