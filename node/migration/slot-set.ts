/** A set of slot indexes of one image, a bit each (an image of 10^6 slots costs 125 KiB). */
export class SlotSet {
  private readonly bits: Uint8Array

  constructor (slots: number) {
    this.bits = new Uint8Array(Math.ceil(slots / 8))
  }

  add (slot: number): void {
    this.bits[slot >>> 3] |= 1 << (slot & 7)
  }

  has (slot: number): boolean {
    return (this.bits[slot >>> 3] & (1 << (slot & 7))) !== 0
  }
}
