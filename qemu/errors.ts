/** Typed errors of the QEMU integration; callers branch on `code`. */
import { MemfabricError } from '../common/errors.ts'

export class QmpConnectError extends MemfabricError {
  static readonly code = 'ERR_QMP_CONNECT'
  constructor (message: string, options?: ErrorOptions) { super(message, QmpConnectError.code, options) }
}

export class QmpTimeoutError extends MemfabricError {
  static readonly code = 'ERR_QMP_TIMEOUT'
  constructor (message: string) { super(message, QmpTimeoutError.code) }
}

export class QmpClosedError extends MemfabricError {
  static readonly code = 'ERR_QMP_CLOSED'
  constructor (message: string, options?: ErrorOptions) { super(message, QmpClosedError.code, options) }
}

export class QmpProtocolError extends MemfabricError {
  static readonly code = 'ERR_QMP_PROTOCOL'
  constructor (message: string) { super(message, QmpProtocolError.code) }
}

/** QEMU answered a command with an error; `errorClass` is QEMU's class (e.g. `GenericError`). */
export class QmpCommandError extends MemfabricError {
  static readonly code = 'ERR_QMP_COMMAND'
  readonly errorClass: string
  constructor (message: string, errorClass: string) {
    super(message, QmpCommandError.code)
    this.errorClass = errorClass
  }
}

/** The guest's RAM is not a shared file, or the file does not match what QEMU maps. */
export class GuestRamError extends MemfabricError {
  static readonly code = 'ERR_GUEST_RAM'
  constructor (message: string, options?: ErrorOptions) { super(message, GuestRamError.code, options) }
}

/** The RAM delivered to the destination does not hash to the manifest root of the final round. */
export class RamVerificationError extends MemfabricError {
  static readonly code = 'ERR_RAM_VERIFICATION'
  constructor (message: string) { super(message, RamVerificationError.code) }
}

/** QEMU's migration of the device state failed or did not finish in time. */
export class DeviceMigrationError extends MemfabricError {
  static readonly code = 'ERR_DEVICE_MIGRATION'
  constructor (message: string, options?: ErrorOptions) { super(message, DeviceMigrationError.code, options) }
}

/** A QEMU was not in the state a step needs (e.g. the destination not waiting for `-incoming`). */
export class VmStateError extends MemfabricError {
  static readonly code = 'ERR_VM_STATE'
  constructor (message: string) { super(message, VmStateError.code) }
}
