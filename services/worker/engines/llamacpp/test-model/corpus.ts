/**
 * Small embedded English corpus used to train the test model's byte-level BPE
 * tokenizer at build time. Plain prose on many everyday topics, so that common
 * English words (with and without a leading space) become single tokens.
 *
 * Changing this text changes the learned merges, and therefore the token ids:
 * the corpus is part of the cache key of generated model files (see generate.ts).
 */
export const TRAINING_CORPUS: string = `Hello! How are you today? I am fine, thank you. It is a pleasure to meet you, and I hope that you are having a good day. What would you like to talk about? We can talk about the weather, about food, about music, or about anything else that you have in mind.

The weather today is cold and windy in the north, but the south is warm and sunny. In the morning there was a light rain, and in the afternoon the sky cleared up. Tomorrow will be cloudy with a chance of snow in the mountains. People who live near the sea say that the wind is stronger than usual for this time of the year.

A good breakfast gives you energy for the whole day. Many people eat bread with butter, eggs, fruit, or a bowl of rice. Some people drink coffee, while others prefer tea or a glass of fresh orange juice. For lunch we often have soup and a small salad, and for dinner we cook pasta, fish, chicken, or vegetables with a little salt and olive oil.

The capital of France is Paris, and the capital of Germany is Berlin. Rome is the capital of Italy, Madrid is the capital of Spain, and Tokyo is the capital of Japan. London is a large city on the river Thames. Each of these cities has old streets, famous museums, busy markets, and beautiful parks where people walk in the evening.

Water boils at one hundred degrees Celsius at sea level and freezes at zero degrees. The Earth moves around the Sun once every year, and the Moon moves around the Earth about once every month. Light from the Sun takes about eight minutes to reach us. Scientists study the stars, the planets, and the small particles that make up all matter.

Computers run programs that are written by people. A program is a list of instructions, and a good program is simple, clear, and easy to test. When a program has a bug, the developer reads the code, writes a small test, and fixes the error. Modern software runs on servers in large data centers, and users reach it through the network from their phones and laptops.

A language model reads a sequence of tokens and predicts the next token. The model turns each token into a vector, passes the vectors through many layers, and produces a score for every token in the vocabulary. The tokenizer splits text into tokens, and the detokenizer turns tokens back into text. A server can send the tokens to the client one at a time, as a stream.

The user asked the assistant a question, and the assistant gave a short answer. The system message tells the assistant how it should behave. A helpful assistant is honest, polite, and careful. If the assistant does not know the answer, it should say so instead of making something up. The conversation continues until the user has no more questions.

Once upon a time there was a little girl who lived in a house at the edge of a forest. Every day she walked to the village to buy bread and milk for her family. One day she met an old man who was sitting by the road. He told her a story about a king, a queen, and a dragon that lived in the hills, and she listened until the sun went down.

Music can make us happy or sad. Some songs are fast and loud, and others are slow and quiet. A piano has black and white keys, a guitar has six strings, and a drum is played with two sticks. Children learn to sing at school, and many adults play an instrument in their free time. Good music brings people together.

Sports are a great way to stay healthy. Football is the most popular game in the world, but many people also enjoy tennis, basketball, swimming, running, and cycling. A team needs to work together to win. Before a match the players train hard, eat well, and sleep enough, because rest is just as important as practice.

Doctors and nurses work in hospitals and help people who are sick or hurt. If you have a fever, you should drink plenty of water and stay in bed. Washing your hands often is one of the simplest ways to avoid getting ill. Regular exercise, fresh air, and a balanced diet help the body and the mind stay strong.

The history of the world is long and full of change. Ancient people built cities along great rivers, invented writing, and traded goods over long distances. Empires rose and fell. Over many centuries people learned to print books, to sail across the oceans, to build machines, and finally to send messages around the planet in less than a second.

Money is used to buy and sell goods and services. A bank keeps money safe and lends it to people and companies. Prices go up when demand is high and supply is low. A small business needs a good plan, loyal customers, and careful attention to costs. Many people save a part of their income every month for the future.

Trees give us shade, wood, fruit, and clean air. A forest is home to birds, insects, deer, foxes, and many other animals. In spring the flowers open and the fields turn green. In summer the days are long and hot. In autumn the leaves turn red and yellow and fall to the ground, and in winter the land is often covered with snow.

Cats and dogs are the most common pets. A dog likes to run, play, and go for long walks, while a cat likes to sleep in a warm place and watch the world from the window. Horses, cows, sheep, and goats live on farms. The farmer wakes up early to feed the animals and to work in the fields before it gets too hot.

Travel opens the mind. When you visit a new country, you can taste new food, hear a new language, and see how other people live. It is a good idea to carry a map, a little cash, and a copy of your passport. Trains are comfortable for short trips, and planes are faster for long journeys across the sea.

Reading is one of the best habits a person can have. A good book can teach you about history, science, or the human heart. Libraries lend books for free, and many writers share their stories online. Some people like novels, others prefer poems, and some read only the news. Reading a little every day makes your vocabulary richer.

Mathematics is the language of patterns. One plus one is two, two plus two is four, and three times three is nine. Ten divided by two is five. A triangle has three sides, a square has four equal sides, and a circle has no corners at all. Numbers such as 1, 2, 3, 10, 42, 100, and 2024 appear in every part of daily life.

Please write a short poem about the sea. Tell me a joke about a cat. Translate this sentence into French. Summarize the following text in one paragraph. Explain how a rainbow is formed. Give me three ideas for a birthday party. What time is it now? Can you help me with my homework? Yes, of course, I would be glad to help.

The city wakes up slowly. Shops open their doors, buses fill with workers, and the smell of fresh bread comes from the bakery on the corner. Children run to school with their bags on their backs. By noon the streets are crowded, and by night the lights of the tall buildings shine over the quiet river.

Energy comes from many sources. Coal, oil, and gas have powered factories and cars for a long time, but they also pollute the air. Wind, water, and sunlight are clean sources that never run out. Engineers are building better batteries so that power from the wind and the sun can be stored and used when it is needed.

Friendship is built on trust. A true friend listens when you talk, helps when you are in trouble, and tells you the truth even when it is hard to hear. Friends share meals, laugh at the same jokes, and remember the small things that matter. It takes time to build a friendship, but it can last for a whole life.

The kitchen was small but bright. On the table there was a bowl of apples, a jar of honey, and a loaf of brown bread. My grandmother stood by the stove and stirred a pot of soup. She always said that the secret of good cooking is patience, a sharp knife, and a little love in every dish.

In the classroom the teacher wrote a question on the board. The students thought about it for a minute, and then one boy raised his hand. His answer was not quite right, but the teacher smiled and asked another student to help. Learning is easier when people are not afraid to make mistakes.

The ocean covers most of the surface of the Earth. It is home to whales, dolphins, sharks, turtles, and countless small fish. Deep under the water there are mountains, valleys, and places where no light ever reaches. Ships carry goods between the continents, and fishermen go out before dawn to catch fish for the market.

A good night of sleep is important for health. Adults need about seven or eight hours each night, and children need even more. It helps to go to bed at the same time every day, to keep the room dark and cool, and to put the phone away before sleeping. Without enough sleep it is hard to think clearly.

The old bridge crossed the river near the mill. It was made of stone and had stood there for more than three hundred years. Every morning the baker crossed it on his way to work, and every evening the fishermen sat on its wall and told stories. When a storm damaged the bridge, the whole town came together to repair it.

Art helps us see the world in a new way. A painter uses color and light, a sculptor shapes stone or metal, and a photographer waits for the perfect moment. Museums keep works of art from many centuries. Some paintings are famous all over the world, and millions of visitors come to see them every year.

The train left the station at seven o'clock. It was full of people going to work, students reading their notes, and a few tourists looking out of the window. The journey took two hours. When we arrived, it was raining, so we bought an umbrella and walked to the hotel, which was only a few minutes away.

Good communication is clear and kind. When you write an email, start with a friendly greeting, state your point in the first few lines, and end with a clear request. When you speak, look at the other person and listen to what they say. Many problems at work and at home start with a simple misunderstanding.

The garden needs care all year round. In spring we plant seeds and water them every day. In summer we pick tomatoes, beans, and strawberries. In autumn we rake the leaves and prepare the soil for the cold months. A small garden can give a family fresh vegetables and a quiet place to rest.

It's late, and I don't think we'll finish today. We're tired, they're hungry, and you've worked hard. I'm sure she'll understand if we stop now. Let's meet again tomorrow morning at nine. Isn't that a good idea? I can't promise that everything will be ready, but we'll do our best, and that's what counts.

The internet connects billions of people. We use it to read the news, to watch videos, to send messages, and to buy things. Information travels as small packets of data through cables under the sea and through the air. Keeping personal data safe is important, so use strong passwords and do not share them with anyone.

The mountains were covered with snow, and the air was thin and cold. We started the climb early in the morning and reached the top just before noon. From there we could see the valley, the lake, and the small village where we had spent the night. It was the most beautiful view I had ever seen.

Every language has its own sounds, words, and rules. Children learn their first language naturally by listening to the people around them. Adults who learn a second language must study grammar and practice speaking every day. Knowing more than one language makes it easier to travel, to work abroad, and to make new friends.

The results of the test were good. Most of the students passed, and a few of them got the highest score. The teacher was proud of the class. She told them that hard work always pays off, and that the next exam would be a little more difficult. Then she wished them a happy and restful holiday.

Thank you for your message. I have read your question carefully, and here is my answer. First, check that the device is connected to power. Second, restart it and wait for one minute. Third, if the problem is still there, contact our support team. We are always happy to help, and we will reply as soon as possible.

Goodbye, and have a nice evening! It was good to talk with you. If you have any other questions, feel free to ask at any time. See you soon, take care, and good luck with everything.
`;
