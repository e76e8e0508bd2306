// kafkajs against a broker: manual offset commits of a running consumer, read back with
// admin.fetchOffsets. Driven by tests/broker/test_clients_kafkajs.py.
//
//   node commit_offsets.js SCENARIO BOOTSTRAP TOPIC GROUP
//
// Prints one JSON object per line: {"step": ..., "offsets": [o0, o1, o2], ...}, the
// committed offsets of partitions 0-2 as admin.fetchOffsets returns them. Exits 1 with
// the error on stderr on any failure, 2 when a wait runs past its limit.
//
// Scenarios (3-partition topic, consumers with autoCommit: false, fromBeginning: true):
//   running     10 records per partition; once the consumer has read them all it commits
//               5, 6, 7 in one commitOffsets call, then 8, 9, 10 in three concurrent
//               calls; the offsets are read back after each and after the consumer left.
//   past-end    3 records per partition; the consumer reads them and commits 5, 6, 7
//               (past the end of each partition); a second consumer of the group then
//               fetches at 5, 6, 7, gets OFFSET_OUT_OF_RANGE, and kafkajs resets each
//               partition by committing its default offset, -2 (EARLIEST).
'use strict'

const { Kafka, logLevel } = require('kafkajs')

const [scenario, bootstrap, topic, groupId] = process.argv.slice(2)
const PARTITIONS = [0, 1, 2]
const WAIT_MS = 30000

// The whole run is bounded; unref() so the timer never keeps a finished run alive.
setTimeout(() => {
  console.error(`${scenario}: gave up after 60 s`)
  process.exit(2)
}, 60000).unref()

const outOfRange = [] // partitions kafkajs reset after OFFSET_OUT_OF_RANGE, in order
const logCreator = () => ({ level, log }) => {
  if (log.message.includes('Offset out of range')) outOfRange.push(log.partition)
  else if (log.message.startsWith('Response Fetch') && log.error.includes('range of offsets'))
    return // the same OFFSET_OUT_OF_RANGE, logged once more by the connection
  else if (level <= logLevel.WARN) console.error(JSON.stringify(log))
}

const kafka = new Kafka({
  clientId: 'kafkajs-test',
  brokers: [bootstrap],
  logLevel: logLevel.ERROR,
  logCreator,
  retry: { retries: 3 },
})

const emit = (step, fields) => console.log(JSON.stringify({ step, ...fields }))

async function waitFor(what, predicate) {
  const deadline = Date.now() + WAIT_MS
  while (!predicate()) {
    if (Date.now() > deadline) {
      console.error(`${scenario}: timed out waiting for ${what}`)
      process.exit(2)
    }
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

async function committed(admin) {
  const [{ partitions }] = await admin.fetchOffsets({ groupId, topics: [topic] })
  const byPartition = Object.fromEntries(partitions.map(p => [p.partition, Number(p.offset)]))
  return PARTITIONS.map(p => byPartition[p])
}

async function produce(perPartition) {
  const producer = kafka.producer()
  await producer.connect()
  await producer.send({
    topic,
    messages: PARTITIONS.flatMap(partition =>
      Array.from({ length: perPartition }, (_, i) => ({ partition, value: `p${partition}-${i}` }))
    ),
  })
  await producer.disconnect()
}

// A running consumer of the group; `received` lists [partition, offset] as delivered.
// A 10 s session: Tansu holds the first JoinGroup for half of it (30 s by default).
async function startConsumer() {
  const consumer = kafka.consumer({
    groupId,
    maxWaitTimeInMs: 250,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
  })
  const received = []
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      received.push([partition, Number(message.offset)])
    },
  })
  return { consumer, received }
}

const commit = (consumer, offsets) =>
  consumer.commitOffsets(
    offsets.map((offset, partition) => ({ topic, partition, offset: String(offset) }))
  )

async function running(admin) {
  await produce(10)
  const { consumer, received } = await startConsumer()
  await waitFor('30 records', () => received.length >= 30)
  emit('consumed', { received: received.length })
  await commit(consumer, [5, 6, 7])
  emit('committed together', { offsets: await committed(admin) })
  await Promise.all(
    [8, 9, 10].map((offset, partition) =>
      consumer.commitOffsets([{ topic, partition, offset: String(offset) }])
    )
  )
  emit('committed concurrently', { offsets: await committed(admin) })
  await consumer.disconnect()
  emit('after leaving', { offsets: await committed(admin), outOfRange })
}

async function pastEnd(admin) {
  await produce(3)
  const first = await startConsumer()
  await waitFor('9 records', () => first.received.length >= 9)
  await commit(first.consumer, [5, 6, 7])
  emit('committed past the end', { offsets: await committed(admin) })
  await first.consumer.disconnect()

  const second = await startConsumer()
  await waitFor('9 records again', () => second.received.length >= 9)
  await waitFor('a reset of each partition', () => new Set(outOfRange).size === 3)
  const offsets = await committed(admin)
  await second.consumer.disconnect()
  emit('second consumer', {
    offsets,
    outOfRange: [...outOfRange].sort(),
    received: second.received.sort((a, b) => a[0] - b[0] || a[1] - b[1]),
  })
}

async function main() {
  const admin = kafka.admin()
  await admin.connect()
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true })
    if (scenario === 'running') await running(admin)
    else if (scenario === 'past-end') await pastEnd(admin)
    else throw new Error(`unknown scenario ${scenario}`)
  } finally {
    await admin.disconnect()
  }
}

main().then(
  () => process.exit(0),
  error => {
    console.error(error && error.stack ? error.stack : error)
    process.exit(1)
  }
)
