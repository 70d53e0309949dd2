// Who am I: a name and a colour picked at random once, kept in localStorage, editable.

const STORAGE_KEY = 'collab.user'

export const COLORS = [
  '#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#16a2b8',
  '#d6336c', '#2f9e44', '#1c7ed6', '#e8590c', '#7048e8', '#0c8599'
]

const ADJECTIVES = ['Quick', 'Calm', 'Brave', 'Bright', 'Clever', 'Gentle', 'Happy', 'Kind',
  'Lucky', 'Merry', 'Nimble', 'Proud', 'Quiet', 'Swift', 'Witty', 'Bold']
const ANIMALS = ['Otter', 'Fox', 'Heron', 'Lynx', 'Panda', 'Koala', 'Falcon', 'Badger',
  'Dolphin', 'Owl', 'Tiger', 'Wombat', 'Moose', 'Gecko', 'Puffin', 'Yak']

const pick = (list) => list[Math.floor(Math.random() * list.length)]

/** '#rrggbb' -> '#rrggbb33' (the light variant y-codemirror.next uses for selections) */
export const lighten = (color) => (/^#[0-9a-f]{6}$/i.test(color) ? color + '33' : color)

export const randomUser = () => {
  const color = pick(COLORS)
  return { name: `${pick(ADJECTIVES)} ${pick(ANIMALS)}`, color, colorLight: lighten(color) }
}

const storage = () => {
  try {
    return globalThis.localStorage ?? null
  } catch {
    return null // e.g. disabled cookies in an iframe
  }
}

/** The stored user, or a new random one (stored). */
export const loadUser = () => {
  const store = storage()
  try {
    const saved = JSON.parse(store?.getItem(STORAGE_KEY) ?? 'null')
    if (saved && typeof saved.name === 'string' && saved.name.trim() && /^#[0-9a-f]{6}$/i.test(saved.color)) {
      return { name: saved.name.slice(0, 60), color: saved.color, colorLight: lighten(saved.color) }
    }
  } catch {}
  const user = randomUser()
  saveUser(user)
  return user
}

export const saveUser = (user) => {
  try {
    storage()?.setItem(STORAGE_KEY, JSON.stringify({ name: user.name, color: user.color }))
  } catch {}
}
