import test from 'ava'
import { AdaptiveLevel, MIN_ADAPTIVE_LEVEL } from '../../protocols/pages/adaptive-level.ts'

test('a link that makes every write wait keeps the configured level', t => {
  const level = new AdaptiveLevel(8)
  for (let i = 0; i < 50; i++) level.observe(30, 80)
  t.is(level.current, 8)
})

test('a link that never waits while compression takes time walks the level down to the lowest, and back up once writes wait again', t => {
  const level = new AdaptiveLevel(8)
  for (let i = 0; i < 50; i++) level.observe(40, 0)
  t.is(level.current, MIN_ADAPTIVE_LEVEL)
  for (let i = 0; i < 50; i++) level.observe(5, 20)
  t.is(level.current, 8)
})

test('the level never exceeds the configured one, changes at most every other frame, and a configured level below the floor is kept', t => {
  const level = new AdaptiveLevel(8)
  t.is(level.current, 8)
  level.observe(40, 0)
  t.is(level.current, 8)
  level.observe(40, 0)
  t.is(level.current, 7)
  level.observe(40, 0)
  t.is(level.current, 7)
  const low = new AdaptiveLevel(3)
  for (let i = 0; i < 20; i++) low.observe(40, 0)
  t.is(low.current, 3)
  for (let i = 0; i < 20; i++) low.observe(5, 20)
  t.is(low.current, 3)
})

test('cheap frames (under 2 ms to compress) do not lower the level', t => {
  const level = new AdaptiveLevel(8)
  for (let i = 0; i < 20; i++) level.observe(1, 0)
  t.is(level.current, 8)
})
