/** Typed errors of the QEMU integration; callers branch on `code`. */
import { MemfabricError } from '../store/errors.ts'

export class QmpConnectError extends MemfabricError {
  constructor (message: string, options?: ErrorOptions) { super(message, 'ERR_QMP_CONNECT', options) }
}

export class QmpTimeoutError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_QMP_TIMEOUT') }
}

export class QmpClosedError extends MemfabricError {
  constructor (message: string, options?: ErrorOptions) { super(message, 'ERR_QMP_CLOSED', options) }
}

export class QmpProtocolError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_QMP_PROTOCOL') }
}

/** QEMU answered a command with an error; `errorClass` is QEMU's class (e.g. `GenericError`). */
export class QmpCommandError extends MemfabricError {
  readonly errorClass: string
  constructor (message: string, errorClass: string) {
    super(message, 'ERR_QMP_COMMAND')
    this.errorClass = errorClass
  }
}

/** The guest's RAM is not a shared file, or the file does not match what QEMU maps. */
export class GuestRamError extends MemfabricError {
  constructor (message: string, options?: ErrorOptions) { super(message, 'ERR_GUEST_RAM', options) }
}

/** The RAM delivered to the destination does not hash to the manifest root of the final round. */
export class RamVerificationError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_RAM_VERIFICATION') }
}

/** QEMU's migration of the device state failed or did not finish in time. */
export class DeviceMigrationError extends MemfabricError {
  constructor (message: string, options?: ErrorOptions) { super(message, 'ERR_DEVICE_MIGRATION', options) }
}

/** A QEMU was not in the state a step needs (e.g. the destination not waiting for `-incoming`). */
export class VmStateError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_VM_STATE') }
}
